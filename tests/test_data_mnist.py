"""MNIST reader and file search: real data (shared copy), error paths on generated idx files."""

import dataclasses
import gzip
import shutil

import chex
import numpy as np
import pytest

from itgan_jax.data import base, datasets, mnist

NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz"]


pytestmark = pytest.mark.usefixtures("isolated_data_env")


@pytest.fixture(scope="module")
def real(request):
  shared = request.getfixturevalue("shared_data_dir")
  return datasets.load_dataset("mnist", source="files", data_dir=str(shared))


def _raw_idx(path, header):
  """Independent idx parse: gunzip, skip the header, uint8 payload."""
  return np.frombuffer(gzip.open(path).read(), np.uint8, offset=header)


def test_shapes_dtypes(real):
  chex.assert_shape(real.train_x, (60000, 28, 28, 1))
  chex.assert_shape(real.test_x, (10000, 28, 28, 1))
  chex.assert_shape(real.train_y, (60000,))
  chex.assert_shape(real.test_y, (10000,))
  assert real.train_x.dtype == np.uint8 and real.test_x.dtype == np.uint8
  assert real.train_y.dtype == np.int32 and real.test_y.dtype == np.int32
  assert real.num_classes == 10 and real.name == "mnist"
  assert real.source == "files" and real.verified
  assert real.image_shape == (28, 28, 1)


def test_labels_match_published(real):
  np.testing.assert_array_equal(np.bincount(real.train_y),
                                [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
  np.testing.assert_array_equal(np.bincount(real.test_y),
                                [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
  np.testing.assert_array_equal(real.train_y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
  np.testing.assert_array_equal(real.test_y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])


def test_pixels_match_independent_parse(real, shared_data_dir):
  d = shared_data_dir / "mnist"
  np.testing.assert_array_equal(real.train_x.reshape(-1),
                                _raw_idx(d / "train-images-idx3-ubyte.gz", 16))
  np.testing.assert_array_equal(real.test_x.reshape(-1),
                                _raw_idx(d / "t10k-images-idx3-ubyte.gz", 16))
  np.testing.assert_array_equal(real.test_y, _raw_idx(d / "t10k-labels-idx1-ubyte.gz", 8))


def test_fingerprints_of_real_data(real):
  assert mnist.fingerprint(real.train_x, real.train_y) == mnist.FINGERPRINTS["train"]
  assert mnist.fingerprint(real.test_x, real.test_y) == mnist.FINGERPRINTS["test"]


def test_layouts_and_env_var(shared_data_dir, monkeypatch, real):
  # Files directly in data_dir (no mnist/ subdirectory).
  direct = datasets.load_dataset("mnist", source="files", data_dir=str(shared_data_dir / "mnist"))
  np.testing.assert_array_equal(direct.train_y, real.train_y)
  # Only the environment variable.
  monkeypatch.setenv(datasets.ENV_VAR, str(shared_data_dir))
  via_env = datasets.load_dataset("mnist")
  np.testing.assert_array_equal(via_env.test_x, real.test_x)


def _copy_real(shared_data_dir, dest):
  dest.mkdir(parents=True)
  for n in NAMES:
    shutil.copy(shared_data_dir / "mnist" / n, dest / n)
  return dest


def test_corrupt_file_names_the_file(shared_data_dir, tmp_path, no_network):
  d = _copy_real(shared_data_dir, tmp_path / "data" / "mnist")
  raw = (d / "train-labels-idx1-ubyte.gz").read_bytes()
  (d / "train-labels-idx1-ubyte.gz").write_bytes(raw[: len(raw) // 2])  # truncated
  with pytest.raises(datasets.DatasetCorruptError) as e:
    datasets.load_dataset("mnist", data_dir=str(tmp_path / "data"))
  msg = str(e.value)
  assert isinstance(e.value, datasets.DatasetError) and isinstance(e.value, ValueError)
  assert str(d / "train-labels-idx1-ubyte.gz") in msg
  assert "sha256" in msg and "truncated" in msg and "28,881" in msg
  assert "ITGAN_DATA_DIR" in msg and "data.dir" in msg
  assert not no_network


def test_missing_dir_lists_every_way(tmp_path, no_network):
  where = tmp_path / "nowhere"
  with pytest.raises(datasets.DatasetNotFoundError) as e:
    datasets.load_dataset("mnist", data_dir=str(where), allow_download=False)
  msg = str(e.value)
  assert isinstance(e.value, FileNotFoundError)
  for n in NAMES:
    assert n in msg
  for searched in (where / "mnist", where, tmp_path / "xdg_cache" / "itgan_jax" / "data"):
    assert f"{searched} (does not exist)" in msg
  for way in ("--config.data.dir=DIR", "ITGAN_DATA_DIR", "--config.data.allow_download=True",
              "--config.data.tfds_data_dir", "tfds_prep"):
    assert way in msg, way
  assert not no_network


def test_partial_dir_says_what_is_missing(shared_data_dir, tmp_path, no_network):
  d = tmp_path / "mnist"
  d.mkdir()
  shutil.copy(shared_data_dir / "mnist" / NAMES[1], d / NAMES[1])
  with pytest.raises(datasets.DatasetNotFoundError, match="missing: train-images-idx3-ubyte.gz, "
                     "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"):
    datasets.load_dataset("mnist", data_dir=str(tmp_path))
  assert not no_network


def _with_urls(monkeypatch, url_of):
  reader = datasets.READERS["mnist"]
  files = tuple(dataclasses.replace(f, urls=url_of(f)) for f in reader.files)
  monkeypatch.setitem(datasets.READERS, "mnist", dataclasses.replace(reader, files=files))


def test_download_is_atomic_and_verified(shared_data_dir, tmp_path, monkeypatch, real):
  # file:// URLs stand in for the mirrors (no network); the first mirror of each file fails.
  _with_urls(monkeypatch, lambda f: ((tmp_path / "gone" / f.name).as_uri(),
                                     (shared_data_dir / "mnist" / f.name).as_uri()))
  target = tmp_path / "dl"
  ds = datasets.load_dataset("mnist", data_dir=str(target), allow_download=True)
  np.testing.assert_array_equal(ds.train_x, real.train_x)
  assert sorted(p.name for p in (target / "mnist").iterdir()) == sorted(NAMES)  # no .part left
  # A second load finds the files without downloading.
  _with_urls(monkeypatch, lambda f: ())
  np.testing.assert_array_equal(datasets.load_dataset("mnist", data_dir=str(target)).test_y,
                                real.test_y)


def test_download_of_corrupt_file_is_rejected(shared_data_dir, tmp_path, monkeypatch):
  bad = tmp_path / "mirror"
  _copy_real(shared_data_dir, bad)
  (bad / NAMES[0]).write_bytes(b"\x1f\x8b not mnist")
  _with_urls(monkeypatch, lambda f: ((bad / f.name).as_uri(),))
  target = tmp_path / "dl"
  with pytest.raises(datasets.DatasetNotFoundError, match="(?s)could not download "
                     "train-images-idx3-ubyte.gz.*got 12 bytes with sha256") as e:
    datasets.load_dataset("mnist", data_dir=str(target), allow_download=True)
  assert "Provide them in one of these ways" in str(e.value)
  assert not (target / "mnist" / NAMES[0]).exists()
  assert not list((target / "mnist").glob("*.part"))


def _write_idx(path, arr, magic=None, cut=0, extra=b""):
  arr = np.asarray(arr, np.uint8)
  magic = magic if magic is not None else 0x0800 | arr.ndim
  raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
  raw += arr.tobytes() + extra
  data = gzip.compress(raw)
  path.write_bytes(data[: len(data) - cut] if cut else data)
  return path


def test_read_idx_roundtrip_and_errors(tmp_path):
  x = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
  np.testing.assert_array_equal(mnist.read_idx(_write_idx(tmp_path / "ok.gz", x)), x)
  with pytest.raises(base.DatasetCorruptError, match="bad idx magic number 0x00000d03"):
    mnist.read_idx(_write_idx(tmp_path / "float.gz", x, magic=0x0D03))
  with pytest.raises(base.DatasetCorruptError, match="bad idx magic number 0x00000801.*0x00000803"):
    mnist.read_idx(_write_idx(tmp_path / "labels.gz", x[0, 0]), ndim=3)
  with pytest.raises(base.DatasetCorruptError, match=r"shape \(3, 28, 28\).*2,353 data bytes"):
    mnist.read_idx(_write_idx(tmp_path / "extra.gz", x, extra=b"\x00"))
  with pytest.raises(base.DatasetCorruptError, match="not a complete gzip file.*truncated"):
    mnist.read_idx(_write_idx(tmp_path / "cut.gz", x, cut=10))
  (tmp_path / "plain").write_bytes(b"not gzip at all")
  with pytest.raises(base.DatasetCorruptError, match="plain"):
    mnist.read_idx(tmp_path / "plain")


def _tiny_set(d, n_train=4, n_labels=4, label_value=3):
  x = np.arange(n_train * 28 * 28).reshape(n_train, 28, 28) % 251
  paths = {
      NAMES[0]: _write_idx(d / NAMES[0], x),
      NAMES[1]: _write_idx(d / NAMES[1], np.full(n_labels, label_value)),
      NAMES[2]: _write_idx(d / NAMES[2], x[:2]),
      NAMES[3]: _write_idx(d / NAMES[3], [1, 2]),
  }
  return x, paths


def test_load_unverified_tiny_set_and_count_errors(tmp_path):
  x, paths = _tiny_set(tmp_path)
  ds = mnist.load(paths, verify=False)
  np.testing.assert_array_equal(ds.train_x[..., 0], x)
  assert not ds.verified and ds.train_y.dtype == np.int32
  with pytest.raises(base.DatasetCorruptError, match="sha256"):
    mnist.load(paths)  # generated files are not the originals
  _, paths = _tiny_set(tmp_path, n_labels=5)
  with pytest.raises(base.DatasetCorruptError, match="4 images but .* 5 labels"):
    mnist.load(paths, verify=False)
  _, paths = _tiny_set(tmp_path, label_value=12)
  with pytest.raises(base.DatasetCorruptError, match="label 12 outside 0..9"):
    mnist.load(paths, verify=False)


def test_sha256_cache_follows_file_changes(tmp_path):
  p = tmp_path / "f"
  p.write_bytes(b"abc")
  assert base.sha256_file(p) == base.sha256_bytes(b"abc")
  p.write_bytes(b"abcd")
  assert base.sha256_file(p) == base.sha256_bytes(b"abcd")


def test_unknown_name_and_source():
  with pytest.raises(ValueError, match="'stl10' is not one of"):
    datasets.load_dataset("stl10")
  with pytest.raises(ValueError, match="source='disk'"):
    datasets.load_dataset("mnist", source="disk")


def test_a_data_dir_that_does_not_exist_never_falls_back_silently(shared_data_dir, tmp_path,
                                                                  monkeypatch):
  monkeypatch.setenv(datasets.ENV_VAR, str(shared_data_dir))
  with pytest.raises(datasets.DatasetNotFoundError, match="does not exist .a typo.*are in"):
    datasets.load_dataset("mnist", data_dir=str(tmp_path / "typo"), allow_download=False)
