"""SVHN .mat reader on small generated files: orientation, labels, every error; tfds copies."""

import dataclasses

import chex
import numpy as np
import pytest
import scipy.io

from itgan_jax.data import base, datasets, svhn, tfds_prep
from tests.helpers import svhn_pattern, write_svhn_mats

TRAIN, TEST = "train_32x32.mat", "test_32x32.mat"


pytestmark = pytest.mark.usefixtures("isolated_data_env")


def test_orientation_labels_and_dtypes(tmp_path):
  paths = write_svhn_mats(tmp_path)
  ds = svhn.load(paths, verify=False)
  chex.assert_shape([ds.train_x, ds.test_x, ds.train_y, ds.test_y],
                    [(30, 32, 32, 3), (20, 32, 32, 3), (30,), (20,)])
  assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int32
  assert ds.train_x.flags.c_contiguous and ds.num_classes == 10 and ds.name == "svhn"
  assert ds.source == "files" and not ds.verified
  # Independent reference: image i of the file is X[:, :, :, i] (MATLAB X(:,:,:,i)), rows first.
  for split, x, n, offset in (("train", ds.train_x, 30, 0), ("test", ds.test_x, 20, 100)):
    raw = svhn_pattern(n, offset)
    for i in (0, 7, n - 1):
      for h, w, c in ((0, 0, 0), (0, 1, 0), (1, 0, 0), (5, 9, 2), (31, 30, 1)):
        assert x[i, h, w, c] == raw[h, w, c, i] == (i + offset + 7 * h + 3 * w + 50 * c) % 256
  # Row h of an upright image steps by 7 downwards, by 3 to the right (the official (3, 2, 0, 1)
  # transpose would swap these).
  np.testing.assert_array_equal(np.diff(ds.train_x[0, :, 0, 0].astype(int)) % 256, 7)
  np.testing.assert_array_equal(np.diff(ds.train_x[0, 0, :, 0].astype(int)) % 256, 3)
  # Labels 1..10 -> 0..9 with 10 (digit 0) -> 0.
  np.testing.assert_array_equal(ds.train_y, (np.arange(30) % 10 + 1) % 10)
  np.testing.assert_array_equal(ds.test_y[:8], [4, 5, 6, 7, 8, 9, 0, 1])
  assert set(ds.train_y) == set(range(10))


def test_float_and_row_vector_labels_are_accepted(tmp_path):
  y = np.array([[10.0, 1.0, 5.0]])  # MATLAB double, a 1 x N row vector
  scipy.io.savemat(tmp_path / "a.mat", {"X": svhn_pattern(3), "y": y})
  x, labels = svhn.read_mat(tmp_path / "a.mat")
  np.testing.assert_array_equal(labels, [0, 1, 5])
  assert labels.dtype == np.int32 and x.shape == (3, 32, 32, 3)


def test_generated_files_fail_the_sha256_check(tmp_path):
  paths = write_svhn_mats(tmp_path)
  with pytest.raises(base.DatasetCorruptError, match="not the original train_32x32.mat") as e:
    svhn.load(paths)
  assert svhn.TRAIN.sha256[0] in str(e.value) and "182,040,794" in str(e.value)
  with pytest.raises(ValueError, match=r"no path given for \['test_32x32.mat'\]"):
    svhn.load({TRAIN: paths[TRAIN]})
  # Through load_dataset: the reason plus every way to provide the original files.
  write_svhn_mats(tmp_path / "root" / "svhn")
  with pytest.raises(datasets.DatasetCorruptError) as e:
    datasets.load_dataset("svhn", data_dir=str(tmp_path / "root"))
  for part in ("sha256", "train_32x32.mat", "--config.data.dir=DIR", "ITGAN_DATA_DIR"):
    assert part in str(e.value), part


def test_wrong_image_count_under_verification(tmp_path, monkeypatch):
  paths = write_svhn_mats(tmp_path)
  accepted = tuple(dataclasses.replace(spec, sha256=(base.sha256_file(paths[spec.name]),))
                   for spec in svhn.FILES)  # as if these were the original files
  monkeypatch.setattr(svhn, "FILES", accepted)
  with pytest.raises(base.DatasetCorruptError, match="30 images, expected 73257"):
    svhn.load(paths)


def test_missing_files_say_where_to_get_them(tmp_path, no_network):
  (tmp_path / "svhn").mkdir()
  write_svhn_mats(tmp_path / "other")
  (tmp_path / "other" / TEST).unlink()
  with pytest.raises(datasets.DatasetNotFoundError) as e:
    datasets.load_dataset("svhn", data_dir=str(tmp_path))
  msg = str(e.value)
  for part in ("SVHN (cropped digits) not found (downloads are off)", TRAIN, TEST,
               "http://ufldl.stanford.edu/housenumbers/", f"{tmp_path / 'svhn'} (missing: ",
               "--config.data.dir=DIR", "DIR/svhn/", "ITGAN_DATA_DIR",
               "--config.data.allow_download=True", "--name=svhn", "--config.data.tfds_data_dir"):
    assert part in msg, part


def test_files_in_svhn_subdir_are_found(tmp_path, monkeypatch):
  write_svhn_mats(tmp_path / "svhn")
  unverified = dataclasses.replace(svhn.READER, read=lambda p: svhn.load(p, verify=False))
  monkeypatch.setitem(datasets.READERS, "svhn", unverified)
  monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
  ds = datasets.load_dataset("svhn", source="files")
  assert ds.train_x.shape == (30, 32, 32, 3) and ds.test_y.shape == (20,)


def _write(path, **arrays):
  scipy.io.savemat(path, arrays)
  return path


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(b""), "not a readable MATLAB .mat file"),
    (lambda p: p.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3),
     "not a readable MATLAB .mat file"),
    (lambda p: p.write_bytes(b"MATLAB 7.3 MAT-file".ljust(124) + b"\x00\x02IM" + b"\x89HDF" * 50),
     r"MATLAB v7.3 \(HDF5\) file"),
    (lambda p: _write(p, images=svhn_pattern(2), labels=np.ones((2, 1))),
     r"lacks the variable\(s\) \['X', 'y'\] \(has \['images', 'labels'\]\)"),
    (lambda p: _write(p, X=svhn_pattern(2)), r"lacks the variable\(s\) \['y'\]"),
    (lambda p: _write(p, X=svhn_pattern(2).astype(np.float64), y=np.ones((2, 1))),
     r"X must be uint8 \(32, 32, 3, N\), got float64"),
    (lambda p: _write(p, X=svhn_pattern(2)[:28], y=np.ones((2, 1))),
     r"X must be uint8 \(32, 32, 3, N\), got uint8 \(28, 32, 3, 2\)"),
    (lambda p: _write(p, X=svhn_pattern(2).transpose(3, 0, 1, 2), y=np.ones((2, 1))),
     r"got uint8 \(2, 32, 32, 3\)"),
    (lambda p: _write(p, X=svhn_pattern(3), y=np.ones((2, 1))),
     r"y must be numeric labels of shape \(3, 1\) .* got float64 \(2, 1\)"),
    (lambda p: _write(p, X=svhn_pattern(2), y=np.array(["ab", "cd"])),
     r"y must be numeric labels"),
    (lambda p: _write(p, X=svhn_pattern(3), y=np.array([[1], [0], [2]], np.uint8)),
     r"label 0 \(image 1\) is not an integer in 1..10 .*digit 0 as 10"),
    (lambda p: _write(p, X=svhn_pattern(2), y=np.array([[10], [11]])), r"label 11 \(image 1\)"),
    (lambda p: _write(p, X=svhn_pattern(2), y=np.array([[1.5], [2.0]])), r"label 1.5 \(image 0\)"),
])
def test_bad_files_get_one_clear_error(tmp_path, make, match):
  path = tmp_path / TRAIN
  make(path)
  with pytest.raises(base.DatasetCorruptError, match=match) as e:
    svhn.read_mat(path)
  assert str(path) in str(e.value) and "ufldl.stanford.edu" in str(e.value)
  assert "\n" not in str(e.value)


def test_truncated_file(tmp_path):
  paths = write_svhn_mats(tmp_path, n_train=4, n_test=2)
  raw = paths[TRAIN].read_bytes()
  paths[TRAIN].write_bytes(raw[: len(raw) // 2])
  with pytest.raises(base.DatasetCorruptError, match="truncated or corrupt"):
    svhn.load(paths, verify=False)


# ---------------------------------------------------------------------------------------------
# tfds copy (svhn_cropped): no TensorFlow, mock sources.
tfds = pytest.importorskip("tensorflow_datasets")


class _FakeSource:
  def __init__(self, records, info):
    self.records, self.dataset_info = records, info

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    return self.records[i]


def test_tfds_name_and_prep_entry():
  assert svhn.READER.tfds_name == tfds_prep.TFDS_NAMES["svhn"] == "svhn_cropped"


def test_tfds_copy_restored_from_ids_and_flagged_unverified(tmp_path, no_network):
  sizes = {"train": 30, "test": 12}
  records = {}
  for split, n in sizes.items():
    stored = np.random.RandomState(n).permutation(n)  # tfds's hashed storage order
    records[split] = [{"id": f"{split}_{k:06d}", "image": np.full((32, 32, 3), k, np.uint8),
                       "label": np.int64(k % 10)} for k in stored]

  def serve(builder, split=None, **kwargs):
    assert builder.name == "svhn_cropped"
    return _FakeSource(records[split], builder.info)

  with tfds.testing.mock_data(as_data_source_fn=serve):
    with pytest.warns(UserWarning, match=r"cannot be verified: no content fingerprints .*"
                                         r"\['train', 'test'\].*'id' feature"):
      ds = datasets.load_dataset("svhn", source="tfds", tfds_data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.train_x[:, 3, 4, 1], np.arange(30))
  np.testing.assert_array_equal(ds.test_y, np.arange(12) % 10)
  assert ds.source == "tfds" and not ds.verified and ds.name == "svhn"


def test_tfds_mock_structure(tmp_path, no_network):
  with tfds.testing.mock_data(num_examples=10):
    with pytest.warns(UserWarning, match="cannot be verified"):
      ds = datasets.load_dataset("svhn", source="tfds", tfds_data_dir=str(tmp_path))
  chex.assert_shape([ds.train_x, ds.test_x, ds.train_y], [(10, 32, 32, 3), (10, 32, 32, 3), (10,)])
  assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int32


def test_unprepared_tfds_dir_names_svhn_cropped(tmp_path, no_network):
  with pytest.raises(datasets.DatasetNotFoundError) as e:
    datasets.load_dataset("svhn", source="tfds", tfds_data_dir=str(tmp_path / "empty"))
  msg = str(e.value)
  assert "no usable tfds ArrayRecord copy of svhn_cropped" in msg and "--name=svhn" in msg
