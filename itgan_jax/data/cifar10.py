"""CIFAR-10 from the python-version archive `cifar-10-python.tar.gz` (cs.toronto.edu/~kriz).

As the official scripts (`openai/improved-gan mnist_svhn_cifar10/cifar10_data.py`), the pickles
`data_batch_1..5` and `test_batch` are loaded with `pickle.load(f, encoding='bytes')` and each row
(1024 R, 1024 G, 1024 B values, planes row-major) is reshaped to an image; here to NHWC uint8. The
pickles are read straight from the tar stream (nothing is extracted to disk), with an unpickler that
only accepts the numpy array classes (a pickle cannot run arbitrary code).

Verification: the archive is accepted if its pixel/label content matches the fingerprints of the
original data (sha256 of the concatenated data rows and labels, /work/shared/data/README.md), which
holds for the official archive and for the shared rebuilt copy (different tar/pickle bytes), or if
the archive is byte-identical to the official one (sha256 6d958be0...).
"""

from __future__ import annotations

import pathlib
import pickle
import tarfile
import zlib
from typing import Mapping

import numpy as np

from itgan_jax.data.base import (ArrayDataset, DatasetCorruptError, FileSpec, Reader, sha256_bytes,
                                 sha256_file)

OFFICIAL_ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE = FileSpec("cifar-10-python.tar.gz", (OFFICIAL_ARCHIVE_SHA256,), 170498071,
                   ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",))
FILES = (ARCHIVE,)
MEMBER_DIR = "cifar-10-batches-py"
TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_MEMBERS = ("test_batch",)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")

# sha256 of the data rows (N x 3072 uint8, batches concatenated in order), of the labels as uint8.
FINGERPRINTS = {
    "train": ("9d5c2eddadb0deff02c14c350c0385aab7b1d5ff1edfeb4997c8dc8644960111",
              "2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253"),
    "test": ("177777c33ba79825320efa646ad04a94bdc3c80e4ebe3bd21724f8cdfd4b9d56",
             "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5"),
}


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickler for the CIFAR batch dicts: only numpy's array-reconstruction globals are allowed."""
  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"),
              ("_codecs", "encode")}  # Python 3 writes bytes in protocol-2 pickles this way

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
    if module == "numpy.core.multiarray":  # Python-2-era name; numpy 2 moved it (no shim warning).
      module = "numpy._core.multiarray" if hasattr(np, "_core") else module
    return super().find_class(module, name)


def _parse_batch(f, where: str) -> tuple[np.ndarray, np.ndarray]:
  try:
    batch = _ArrayUnpickler(f, encoding="bytes").load()
  except (tarfile.TarError, zlib.error, OSError):
    raise  # the archive itself is damaged: reported by read_archive
  except Exception as e:  # pickle raises many types on damaged input.
    raise DatasetCorruptError(f"{where}: not a readable CIFAR-10 batch pickle ({e!r})") from e
  if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
    raise DatasetCorruptError(f"{where}: expected a dict with b'data' and b'labels'")
  data, labels = batch[b"data"], np.asarray(batch[b"labels"])
  if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
      or data.shape[1] != 3072:
    raise DatasetCorruptError(f"{where}: b'data' must be uint8 (N, 3072), got "
                              f"{getattr(data, 'dtype', type(data))} {getattr(data, 'shape', '')}")
  if labels.shape != (data.shape[0],) or labels.size and (labels.min() < 0 or labels.max() > 9):
    raise DatasetCorruptError(f"{where}: {labels.shape} labels for {data.shape[0]} rows or labels "
                              "outside 0..9")
  return data, labels.astype(np.int32)


def read_archive(path: pathlib.Path | str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train'/'test': (rows uint8 (N, 3072), labels int32)} read from the tar.gz stream."""
  path = pathlib.Path(path)
  wanted = {f"{MEMBER_DIR}/{m}": m for m in TRAIN_MEMBERS + TEST_MEMBERS}
  batches = {}
  try:
    with tarfile.open(path, mode="r|gz") as tar:  # stream mode: one sequential pass
      for member in tar:
        if member.name in wanted and member.isfile():
          batches[wanted[member.name]] = _parse_batch(tar.extractfile(member),
                                                      f"{path}:{member.name}")
  except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
    raise DatasetCorruptError(f"{path} is not a complete tar.gz archive ({e}); it is truncated or "
                              "corrupt. Replace it with the original.") from e
  missing = [f"{MEMBER_DIR}/{m}" for m in TRAIN_MEMBERS + TEST_MEMBERS if m not in batches]
  if missing:
    raise DatasetCorruptError(f"{path} lacks the members {missing}; not the CIFAR-10 python "
                              "version archive")
  out = {}
  for split, members in (("train", TRAIN_MEMBERS), ("test", TEST_MEMBERS)):
    out[split] = (np.concatenate([batches[m][0] for m in members]),
                  np.concatenate([batches[m][1] for m in members]))
  return out


def rows_to_nhwc(rows: np.ndarray) -> np.ndarray:
  """(N, 3072) rows of R, G, B planes -> (N, 32, 32, 3) uint8 (contiguous)."""
  return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def nhwc_to_rows(x: np.ndarray) -> np.ndarray:
  """Inverse of rows_to_nhwc."""
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(x.shape[0], 3072)


def _rows_fingerprint(rows: np.ndarray, y: np.ndarray) -> tuple[str, str]:
  return sha256_bytes(np.ascontiguousarray(rows)), sha256_bytes(y.astype(np.uint8))


def fingerprint(x: np.ndarray, y: np.ndarray) -> tuple[str, str]:
  """(sha256 of the rows in the pickle's plane layout, sha256 of the labels as uint8)."""
  return _rows_fingerprint(nhwc_to_rows(x), y)


def load(paths: Mapping[str, pathlib.Path | str], *, verify: bool = True) -> ArrayDataset:
  """Reads CIFAR-10 from `{'cifar-10-python.tar.gz': path}` (content-verified if `verify`)."""
  if ARCHIVE.name not in paths:
    raise ValueError(f"cifar10.load: no path given for {ARCHIVE.name}")
  path = pathlib.Path(paths[ARCHIVE.name])
  splits = read_archive(path)
  if verify:
    bad = [f"{split} {what}" for split, (rows, y) in splits.items()
           for what, got, want in zip(("pixels", "labels"), _rows_fingerprint(rows, y),
                                      FINGERPRINTS[split]) if got != want]
    if bad and sha256_file(path) != OFFICIAL_ARCHIVE_SHA256:
      raise DatasetCorruptError(
          f"{path} is not the original CIFAR-10: its {', '.join(bad)} differ from the original "
          f"data (content sha256 fingerprints) and the archive is not the official one (sha256 "
          f"{OFFICIAL_ARCHIVE_SHA256}). Delete it and provide the original {ARCHIVE.name}.")
  (train_rows, train_y), (test_rows, test_y) = splits["train"], splits["test"]
  return ArrayDataset("cifar10", rows_to_nhwc(train_rows), train_y, rows_to_nhwc(test_rows), test_y,
                      10, source="files", verified=verify)


READER = Reader(name="cifar10", title="CIFAR-10", files=FILES, read=load, num_classes=10,
                image_shape=(32, 32, 3), tfds_name="cifar10", fingerprint=fingerprint,
                fingerprints=FINGERPRINTS)
