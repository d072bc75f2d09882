"""CIFAR-10 python-version reader: real data (one module-scoped load), errors on small archives."""

import io
import os
import pickle
import tarfile

import chex
import numpy as np
import pytest

from itgan_jax.data import base, cifar10, datasets

ARCHIVE = "cifar-10-python.tar.gz"


pytestmark = pytest.mark.usefixtures("isolated_data_env")


@pytest.fixture(scope="module")
def real(request):
  shared = request.getfixturevalue("shared_data_dir")
  if not (shared / "cifar10" / ARCHIVE).exists():
    pytest.skip("shared CIFAR-10 copy not found")
  return datasets.load_dataset("cifar10", source="files", data_dir=str(shared))


def test_shapes_dtypes_and_counts(real):
  chex.assert_shape(real.train_x, (50000, 32, 32, 3))
  chex.assert_shape(real.test_x, (10000, 32, 32, 3))
  chex.assert_shape([real.train_y, real.test_y], [(50000,), (10000,)])
  assert real.train_x.dtype == np.uint8 and real.train_y.dtype == np.int32
  assert real.num_classes == 10 and real.verified and real.source == "files"
  np.testing.assert_array_equal(np.bincount(real.train_y), [5000] * 10)
  np.testing.assert_array_equal(np.bincount(real.test_y), [1000] * 10)


def test_published_labels_and_pixels(real):
  np.testing.assert_array_equal(real.train_y[:10], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3])
  np.testing.assert_array_equal(real.test_y[:10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])
  # data_batch_1 row 0 starts 59, 43, 50 (R plane, top row), ends 140, 84, 72 (B plane, last row).
  np.testing.assert_array_equal(real.train_x[0, 0, :3, 0], [59, 43, 50])
  np.testing.assert_array_equal(real.train_x[0, 31, 29:, 2], [140, 84, 72])
  np.testing.assert_array_equal(real.train_x[9999, 0, :3, 0], [62, 61, 60])
  np.testing.assert_array_equal(real.train_x[9999, 31, 29:, 2], [130, 130, 131])
  for i, start in enumerate([[158, 159, 165], [235, 231, 232], [158, 158, 139], [155, 167, 176],
                             [65, 70, 48]]):
    np.testing.assert_array_equal(real.test_x[i, 0, :3, 0], start)


def test_channel_means(real):
  sums = real.train_x.reshape(-1, 3).sum(0, dtype=np.int64)
  np.testing.assert_allclose(sums / (50000 * 32 * 32),
                             (125.306918046875, 122.950394140625, 113.86538318359375),
                             rtol=0, atol=1e-10)


def test_test_batch_matches_plain_pickle(real, shared_data_dir):
  # Independent read: the official recipe (pickle.load(f, encoding='bytes'), reshape 3x32x32).
  with tarfile.open(shared_data_dir / "cifar10" / ARCHIVE, "r|gz") as tar:
    for m in tar:
      if m.name == "cifar-10-batches-py/test_batch":
        d = pickle.load(tar.extractfile(m), encoding="bytes")
        break
  images = d[b"data"].reshape(10000, 3, 32, 32).transpose(0, 2, 3, 1)
  np.testing.assert_array_equal(real.test_x, images)
  np.testing.assert_array_equal(real.test_y, d[b"labels"])


def test_fingerprint_roundtrip(real):
  assert cifar10.fingerprint(real.test_x, real.test_y) == cifar10.FINGERPRINTS["test"]
  x = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
  np.testing.assert_array_equal(cifar10.nhwc_to_rows(cifar10.rows_to_nhwc(x)), x)


def _batch(rows, labels, protocol=2):
  return pickle.dumps({b"batch_label": b"x", b"labels": list(labels), b"data": rows,
                       b"filenames": [b"f"] * len(labels)}, protocol=protocol)


def _write_archive(path, members=None, payloads=None, cut=0):
  """A small python-version-style archive: 2 images per batch, image k has all pixels = k."""
  members = members or [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for b, m in enumerate(members):
      rows = np.repeat(np.array([[2 * b], [2 * b + 1]], np.uint8), 3072, axis=1)
      rows[:, 1024:2048] += 100  # G plane differs from R and B
      data = (payloads or {}).get(m) or _batch(rows, [b % 10, (b + 1) % 10])
      info = tarfile.TarInfo(f"cifar-10-batches-py/{m}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  raw = buf.getvalue()
  path.write_bytes(raw[: len(raw) - cut] if cut else raw)
  return path


def test_generated_archive_reads_unverified(tmp_path):
  path = _write_archive(tmp_path / ARCHIVE)
  ds = cifar10.load({ARCHIVE: path}, verify=False)
  chex.assert_shape([ds.train_x, ds.test_x], [(10, 32, 32, 3), (2, 32, 32, 3)])
  np.testing.assert_array_equal(ds.train_x[:, 5, 7, 0], np.arange(10))
  np.testing.assert_array_equal(ds.train_x[:, 5, 7, 1], np.arange(10) + 100)
  np.testing.assert_array_equal(ds.test_x[:, 0, 0, 2], [10, 11])
  np.testing.assert_array_equal(ds.train_y, [0, 1, 1, 2, 2, 3, 3, 4, 4, 5])
  assert not ds.verified


def test_archive_matching_neither_check_is_rejected(tmp_path):
  (tmp_path / "cifar10").mkdir()
  _write_archive(tmp_path / "cifar10" / ARCHIVE)
  with pytest.raises(datasets.DatasetCorruptError) as e:
    datasets.load_dataset("cifar10", data_dir=str(tmp_path))
  msg = str(e.value)
  for part in ("not the original CIFAR-10", "train pixels", "test labels",
               cifar10.OFFICIAL_ARCHIVE_SHA256, ARCHIVE, str(tmp_path / "cifar10"),
               "--config.data.dir=DIR", "ITGAN_DATA_DIR", "--config.data.allow_download=True",
               "--config.data.tfds_data_dir"):
    assert part in msg, part


def test_truncated_and_incomplete_archives(tmp_path):
  with pytest.raises(base.DatasetCorruptError, match="not a complete tar.gz archive"):
    cifar10.load({ARCHIVE: _write_archive(tmp_path / "cut.tar.gz", cut=200)})
  with pytest.raises(base.DatasetCorruptError, match="lacks the members.*data_batch_3"):
    cifar10.load({ARCHIVE: _write_archive(tmp_path / "few.tar.gz", members=["data_batch_1"])})


def test_bad_pickles(tmp_path):
  evil = pickle.dumps({b"data": os.getcwd, b"labels": []}, protocol=2)  # a global function
  with pytest.raises(base.DatasetCorruptError, match="posix.getcwd is not allowed"):
    cifar10.load({ARCHIVE: _write_archive(tmp_path / "e.tar.gz", payloads={"test_batch": evil})},
                 verify=False)
  floats = _batch(np.zeros((2, 3072), np.float32), [0, 1])
  with pytest.raises(base.DatasetCorruptError, match=r"uint8 \(N, 3072\), got float32"):
    cifar10.load({ARCHIVE: _write_archive(tmp_path / "f.tar.gz",
                                          payloads={"data_batch_2": floats})}, verify=False)
  labels = _batch(np.zeros((2, 3072), np.uint8), [0, 10])
  with pytest.raises(base.DatasetCorruptError, match="outside 0..9"):
    cifar10.load({ARCHIVE: _write_archive(tmp_path / "l.tar.gz",
                                          payloads={"data_batch_2": labels})}, verify=False)
