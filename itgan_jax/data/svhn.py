"""SVHN cropped digits from the original MATLAB files `train_32x32.mat`, `test_32x32.mat`.

Source: http://ufldl.stanford.edu/housenumbers/ (format 2, "cropped digits"). Each file is a MATLAB
v5 .mat with `X`, uint8 (32, 32, 3, N) (height, width, RGB, image), and `y`, (N, 1) labels 1..10
where 10 codes the digit 0. As the official `openai/improved-gan svhn_data.py`, the files are read
with `scipy.io.loadmat` and label 10 becomes 0; the training set is the 73,257 `train_32x32.mat`
images only (no `extra_32x32.mat`), the test set all 26,032 `test_32x32.mat` images.

Orientation: images are returned NHWC as stored, `X.transpose(3, 0, 1, 2)`. The official scripts
transpose with (3, 2, 0, 1), i.e. to N, C, W, H: their images are H/W-transposed (papers.md A.5
quirk 7; consistent between train and test, so harmless for classification). docs/deviations.md.

Verification: each file's sha256 must be the official one (the values tensorflow-datasets checks
its `svhn_cropped` downloads against, checksums.tsv). Content fingerprints of the original data
(to check a tfds copy) are not recorded yet (`FINGERPRINTS` is empty): a tfds copy is put back in
the original order from its `id` feature but cannot be verified (datasets.load_tfds warns).
"""

from __future__ import annotations

import pathlib
from typing import Mapping

import numpy as np

from itgan_jax.data.base import (ArrayDataset, DatasetCorruptError, FileSpec, Reader, given_files,
                                 sha256_bytes)

URL = "http://ufldl.stanford.edu/housenumbers/"
TRAIN = FileSpec("train_32x32.mat",
                 ("435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",),
                 182040794, (URL + "train_32x32.mat",))
TEST = FileSpec("test_32x32.mat",
                ("cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",),
                64275384, (URL + "test_32x32.mat",))
FILES = (TRAIN, TEST)
NUM_EXAMPLES = {"train": 73257, "test": 26032}
IMAGE_SHAPE = (32, 32, 3)

# split -> (sha256 of the NHWC uint8 images, sha256 of the 0..9 labels as uint8); unknown so far.
FINGERPRINTS: dict[str, tuple[str, str]] = {}


def read_mat(path: pathlib.Path | str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 (N, 32, 32, 3), labels int32 0..9) of one SVHN .mat file (label 10 -> 0)."""
  import scipy.io  # lazy: only SVHN needs it here
  path = pathlib.Path(path)
  hint = f"Replace it with the original from {URL}"
  try:
    mat = scipy.io.loadmat(path, variable_names=("X", "y"))
  except NotImplementedError as e:  # scipy's answer to MATLAB v7.3 (HDF5) files
    raise DatasetCorruptError(f"{path} is a MATLAB v7.3 (HDF5) file, not the original MATLAB v5 "
                              f"SVHN file ({e}). {hint}.") from e
  except Exception as e:  # scipy raises many types (ValueError, MatReadError, ...) on damaged files.
    raise DatasetCorruptError(f"{path} is not a readable MATLAB .mat file ({type(e).__name__}: "
                              f"{e}); it is truncated or corrupt. {hint}.") from e
  missing = [k for k in ("X", "y") if k not in mat]
  if missing:
    found = sorted(name for name, _, _ in scipy.io.whosmat(path))
    raise DatasetCorruptError(f"{path} lacks the variable(s) {missing} (has {found}); not an SVHN "
                              f"cropped-digits file (expected X uint8 (32, 32, 3, N) and y (N, 1)). "
                              f"{hint}.")
  x, y = mat["X"], mat["y"]
  if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != IMAGE_SHAPE:
    raise DatasetCorruptError(f"{path}: X must be uint8 (32, 32, 3, N), got {x.dtype} {x.shape}. "
                              f"{hint}.")
  n = x.shape[3]
  if y.ndim != 2 or sorted(y.shape) != sorted((n, 1)) or y.dtype.kind not in "uif":
    raise DatasetCorruptError(f"{path}: y must be numeric labels of shape ({n}, 1) for the {n} "
                              f"images of X, got {y.dtype} {y.shape}. {hint}.")
  y = y.reshape(-1)
  bad = (y < 1) | (y > 10) | (y != np.round(y))
  if bad.any():
    i = int(np.argmax(bad))
    raise DatasetCorruptError(f"{path}: label {y[i].item()!r} (image {i}) is not an integer in "
                              f"1..10 (the original files code digit 0 as 10; 0..9 labels mean a "
                              f"converted file). {hint}.")
  y = y.astype(np.int32) % 10  # 10 -> 0, as official `trainy[trainy==10] = 0`
  return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y


def load(paths: Mapping[str, pathlib.Path | str], *, verify: bool = True) -> ArrayDataset:
  """Reads SVHN from `{'train_32x32.mat': path, 'test_32x32.mat': path}` (sha256 if `verify`)."""
  paths = given_files("svhn", paths, FILES, verify)
  splits = {}
  for split, spec in (("train", TRAIN), ("test", TEST)):
    x, y = read_mat(paths[spec.name])
    if verify and x.shape[0] != NUM_EXAMPLES[split]:  # cannot happen with the official sha256
      raise DatasetCorruptError(f"{paths[spec.name]}: {x.shape[0]} images, expected "
                                f"{NUM_EXAMPLES[split]}")
    splits[split] = x, y
  return ArrayDataset("svhn", *splits["train"], *splits["test"], 10, source="files",
                      verified=verify)


def fingerprint(x: np.ndarray, y: np.ndarray) -> tuple[str, str]:
  """(sha256 of the NHWC uint8 images, sha256 of the 0..9 labels as uint8)."""
  return sha256_bytes(np.ascontiguousarray(x, np.uint8)), sha256_bytes(y.astype(np.uint8))


READER = Reader(name="svhn", title="SVHN (cropped digits)", files=FILES, read=load,
                num_classes=10, image_shape=IMAGE_SHAPE, tfds_name="svhn_cropped",
                fingerprint=fingerprint, fingerprints=FINGERPRINTS)
