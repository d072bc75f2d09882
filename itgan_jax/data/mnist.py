"""MNIST from the four original idx .gz files (http://yann.lecun.com/exdb/mnist/).

The official Improved-GAN script reads `mnist.npz` (x_train + x_valid = the 60,000 training images,
original order; x_test = the 10,000 test images), i.e. the same images and order as the idx files.
Each file is checked against its sha256 (= official md5, see /work/shared/data/README.md).
"""

from __future__ import annotations

import gzip
import pathlib
import zlib
from typing import Mapping

import numpy as np

from itgan_jax.data.base import (ArrayDataset, DatasetCorruptError, FileSpec, Reader, given_files,
                                 sha256_bytes)

_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/")


def _spec(name: str, sha256: str, size: int) -> FileSpec:
  return FileSpec(name, (sha256,), size, tuple(m + name for m in _MIRRORS))


TRAIN_IMAGES = _spec("train-images-idx3-ubyte.gz",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422)
TRAIN_LABELS = _spec("train-labels-idx1-ubyte.gz",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881)
TEST_IMAGES = _spec("t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877)
TEST_LABELS = _spec("t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542)
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# sha256 of the raw uint8 image bytes (N, 28, 28) and of the labels as uint8, original order (the
# idx payloads of the original files); used to check a tfds copy.
FINGERPRINTS = {
    "train": ("741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
              "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"),
    "test": ("6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
             "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"),
}

_IDX_UBYTE = 0x08  # idx type code of unsigned bytes (the only type MNIST uses)


def read_idx(path: pathlib.Path | str, ndim: int | None = None) -> np.ndarray:
  """Parses a gzipped idx file: magic 0x0000TTDD (TT=0x08 uint8, DD=ndim), DD big-endian sizes."""
  path = pathlib.Path(path)
  try:
    raw = gzip.decompress(path.read_bytes())
  except (OSError, EOFError, zlib.error) as e:
    raise DatasetCorruptError(f"{path} is not a complete gzip file ({e}); it is truncated or "
                              "corrupt. Replace it with the original.") from e
  if len(raw) < 4:
    raise DatasetCorruptError(f"{path}: only {len(raw)} bytes after decompression, no idx header")
  zero, dtype, dims_n = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
  if zero != 0 or dtype != _IDX_UBYTE or (ndim is not None and dims_n != ndim):
    expected = f"0x{_IDX_UBYTE << 8 | (ndim or 0):08x}" if ndim else "0x000008NN"
    raise DatasetCorruptError(f"{path}: bad idx magic number 0x{raw[:4].hex()}, expected "
                              f"{expected} (uint8 data); not an MNIST idx file")
  header = 4 + 4 * dims_n
  if len(raw) < header:
    raise DatasetCorruptError(f"{path}: idx header of {dims_n} dimensions is cut off")
  dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims_n))
  payload = len(raw) - header
  if payload != int(np.prod(dims)):
    raise DatasetCorruptError(f"{path}: idx header says shape {dims} ({int(np.prod(dims)):,} "
                              f"bytes) but the file holds {payload:,} data bytes")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _split(images_path: pathlib.Path, labels_path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  x = read_idx(images_path, ndim=3)
  y = read_idx(labels_path, ndim=1)
  if x.shape[1:] != (28, 28):
    raise DatasetCorruptError(f"{images_path}: images are {x.shape[1:]}, expected (28, 28)")
  if x.shape[0] != y.shape[0]:
    raise DatasetCorruptError(f"{images_path} holds {x.shape[0]} images but {labels_path} holds "
                              f"{y.shape[0]} labels")
  if y.size and y.max() > 9:
    raise DatasetCorruptError(f"{labels_path}: label {y.max()} outside 0..9")
  return x[..., None], y.astype(np.int32)


def load(paths: Mapping[str, pathlib.Path | str], *, verify: bool = True) -> ArrayDataset:
  """Reads MNIST from `{file name: path}` of the 4 original files (sha256-checked if `verify`)."""
  paths = given_files("mnist", paths, FILES, verify)
  train_x, train_y = _split(paths[TRAIN_IMAGES.name], paths[TRAIN_LABELS.name])
  test_x, test_y = _split(paths[TEST_IMAGES.name], paths[TEST_LABELS.name])
  return ArrayDataset("mnist", train_x, train_y, test_x, test_y, 10, source="files",
                      verified=verify)


def fingerprint(x: np.ndarray, y: np.ndarray) -> tuple[str, str]:
  """(sha256 of the uint8 pixels in idx order, sha256 of the labels as uint8)."""
  return sha256_bytes(np.ascontiguousarray(x, np.uint8)), sha256_bytes(y.astype(np.uint8))


READER = Reader(name="mnist", title="MNIST", files=FILES, read=load, num_classes=10,
                image_shape=(28, 28, 1), tfds_name="mnist", fingerprint=fingerprint,
                fingerprints=FINGERPRINTS)
