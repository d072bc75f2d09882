"""Pieces shared by the dataset readers: the in-memory dataset, errors, file specs, hashing.

A dataset reader (`mnist.READER`, `cifar10.READER`, later `svhn.READER`) is a `Reader`: the original
files it needs (`FileSpec`: name, accepted sha256, download URLs), a function that verifies and
reads them into an `ArrayDataset`, and the content fingerprints used to check a tfds copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Callable, Mapping, Sequence

import numpy as np


class DatasetError(RuntimeError):
  """A dataset cannot be loaded; the message says what is wrong and how to provide the data."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
  """The dataset files (or the prepared tfds copy) are not where they were looked for."""


class DatasetCorruptError(DatasetError, ValueError):
  """A dataset file exists but is truncated, corrupt or not the original file."""


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A whole dataset in host memory: uint8 NHWC images, int32 labels (original order).

  `source` is 'files' or 'tfds'. `verified` is True when content and order were checked against the
  original dataset (sha256 of the original files, or content fingerprints for a tfds copy); the
  official labeled-subset selection (`ssl.select_labeled`) is only reproduced exactly if it is True.
  """
  name: str
  train_x: np.ndarray  # uint8 (N, H, W, C)
  train_y: np.ndarray  # int32 (N,)
  test_x: np.ndarray   # uint8 (M, H, W, C)
  test_y: np.ndarray   # int32 (M,)
  num_classes: int
  source: str = "files"
  verified: bool = True

  def __post_init__(self):
    for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
      if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"{self.name}: {split}_x must be uint8 (N, H, W, C), got {x.dtype} "
                         f"{x.shape}")
      if y.dtype != np.int32 or y.shape != (x.shape[0],):
        raise ValueError(f"{self.name}: {split}_y must be int32 ({x.shape[0]},), got {y.dtype} "
                         f"{y.shape}")
      if y.size and (y.min() < 0 or y.max() >= self.num_classes):
        raise ValueError(f"{self.name}: {split} labels outside [0, {self.num_classes})")
    if self.train_x.shape[1:] != self.test_x.shape[1:]:
      raise ValueError(f"{self.name}: train images {self.train_x.shape[1:]} and test images "
                       f"{self.test_x.shape[1:]} differ in shape")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_x.shape[1:])


@dataclasses.dataclass(frozen=True)
class FileSpec:
  """One original file: its name, the sha256 values accepted for it, its size and download URLs.

  `sha256[0]` is the hash of the official file (what a download must match); a reader may accept
  further files by content (CIFAR-10, see cifar10.py).
  """
  name: str
  sha256: tuple[str, ...]
  size: int | None
  urls: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Reader:
  """How to get one dataset from its original files (and how to check a tfds copy of it).

  read: {file name: path} -> ArrayDataset; verifies the files (raises DatasetCorruptError).
  fingerprint: (images uint8 NHWC, labels) -> (sha256 of images, sha256 of labels) in the byte
    layout of the original files; `fingerprints[split]` holds the values of the original dataset.
  """
  name: str
  title: str
  files: tuple[FileSpec, ...]
  read: Callable[[Mapping[str, pathlib.Path]], ArrayDataset]
  num_classes: int
  image_shape: tuple[int, int, int]
  tfds_name: str
  fingerprint: Callable[[np.ndarray, np.ndarray], tuple[str, str]]
  fingerprints: Mapping[str, tuple[str, str]]


def sha256_bytes(data) -> str:
  return hashlib.sha256(data).hexdigest()


# (resolved path, size, mtime_ns) -> sha256: files are hashed once per process.
_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: os.PathLike | str) -> str:
  """sha256 of a file, cached per (path, size, mtime) so repeated loads do not re-hash."""
  path = pathlib.Path(path)
  st = path.stat()
  key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
  if key not in _SHA256_CACHE:
    h = hashlib.sha256()
    with path.open("rb") as f:
      while block := f.read(1 << 22):
        h.update(block)
    _SHA256_CACHE[key] = h.hexdigest()
  return _SHA256_CACHE[key]


def given_files(dataset: str, paths: Mapping[str, pathlib.Path | str], files: Sequence[FileSpec],
                verify: bool) -> dict[str, pathlib.Path]:
  """`{file name: path}` of every spec in `files` (a ValueError names any not given), each
  sha256-checked against the original (`check_sha256`) if `verify`."""
  paths = {name: pathlib.Path(p) for name, p in paths.items()}
  missing = [f.name for f in files if f.name not in paths]
  if missing:
    raise ValueError(f"{dataset}.load: no path given for {missing}")
  if verify:
    for spec in files:
      check_sha256(paths[spec.name], spec)
  return paths


def check_sha256(path: pathlib.Path, spec: FileSpec) -> None:
  """Raises DatasetCorruptError if `path` is not one of the accepted versions of `spec`."""
  digest = sha256_file(path)
  if digest in spec.sha256:
    return
  size = path.stat().st_size
  size_note = (f"{size:,} bytes, expected {spec.size:,}: truncated or a different file"
               if spec.size is not None and size != spec.size else f"{size:,} bytes")
  raise DatasetCorruptError(
      f"{path} is corrupt or not the original {spec.name}: sha256 {digest} ({size_note}); expected "
      f"sha256 {spec.sha256[0]}. Delete it and provide the original file.")
