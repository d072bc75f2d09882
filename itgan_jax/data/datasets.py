"""Datasets as in-memory uint8 arrays, from the original files (sha256-checked) or a tfds copy.

Where the original files are looked for, in order: the `data_dir` argument (config `data.dir`), the
environment variable ITGAN_DATA_DIR; in each, the files directly or under `<dir>/<name>/`. With
`allow_download=True` missing files are fetched from their standard mirrors into the first
directory (or ~/.cache/itgan_jax/data) and verified; nothing is ever downloaded otherwise.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pathlib
import tempfile
import urllib.request

import numpy as np

ENV_VAR = "ITGAN_DATA_DIR"
DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "itgan_jax" / "data"


class DatasetError(RuntimeError):
  """Dataset files are missing or corrupt; the message says how to provide them."""


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  name: str
  train_x: np.ndarray  # uint8 (N, H, W, C)
  train_y: np.ndarray  # int32 (N,)
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: int


@dataclasses.dataclass(frozen=True)
class RemoteFile:
  name: str
  sha256: str
  urls: tuple[str, ...]


MNIST_FILES = {
    "train_x": RemoteFile("train-images-idx3-ubyte.gz",
                          "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                          ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                           "https://storage.googleapis.com/cvdf-datasets/mnist/")),
    "train_y": RemoteFile("train-labels-idx1-ubyte.gz",
                          "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                          ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                           "https://storage.googleapis.com/cvdf-datasets/mnist/")),
    "test_x": RemoteFile("t10k-images-idx3-ubyte.gz",
                         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                         ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                          "https://storage.googleapis.com/cvdf-datasets/mnist/")),
    "test_y": RemoteFile("t10k-labels-idx1-ubyte.gz",
                         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                         ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                          "https://storage.googleapis.com/cvdf-datasets/mnist/")),
}


def _search_dirs(data_dir: str | None) -> list[pathlib.Path]:
  roots = [pathlib.Path(d).expanduser() for d in (data_dir, os.environ.get(ENV_VAR)) if d]
  return roots


def _sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _how_to_provide(name: str, files: list[RemoteFile], searched: list[pathlib.Path]) -> str:
  where = ", ".join(str(d) for d in searched) or "(none given)"
  return (f"Expected the original {name} files {[f.name for f in files]}. Searched: {where}. "
          f"Provide them by: (1) --config.data.dir=DIR (files in DIR or DIR/{name}/); "
          f"(2) the environment variable {ENV_VAR}=DIR; (3) --config.data.allow_download=True to "
          f"fetch and verify them (needs internet); (4) a prepared TensorFlow-Datasets copy via "
          f"--config.data.tfds_data_dir=DIR --config.data.source=tfds.")


def _download(file: RemoteFile, directory: pathlib.Path) -> pathlib.Path:
  directory.mkdir(parents=True, exist_ok=True)
  target = directory / file.name
  errors = []
  for base in file.urls:
    try:
      with urllib.request.urlopen(base + file.name, timeout=60) as response:
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".part")
        with os.fdopen(fd, "wb") as out:
          while block := response.read(1 << 20):
            out.write(block)
      if _sha256(pathlib.Path(tmp)) != file.sha256:
        os.unlink(tmp)
        errors.append(f"{base}: sha256 mismatch")
        continue
      os.replace(tmp, target)
      return target
    except OSError as e:
      errors.append(f"{base}: {e}")
  raise DatasetError(f"could not download {file.name}: {'; '.join(errors)}")


def locate_files(name: str, files: dict[str, RemoteFile], data_dir: str | None,
                 allow_download: bool) -> dict[str, pathlib.Path]:
  """Finds (or, if allowed, downloads) every file and checks its sha256."""
  searched = []
  for root in _search_dirs(data_dir):
    for d in (root, root / name):
      searched.append(d)
      if all((d / f.name).is_file() for f in files.values()):
        found = {k: d / f.name for k, f in files.items()}
        for key, path in found.items():
          if _sha256(path) != files[key].sha256:
            raise DatasetError(f"{path} is corrupt or not the original file (sha256 mismatch; "
                               f"expected {files[key].sha256}). Replace it with the original. "
                               + _how_to_provide(name, list(files.values()), searched))
        return found
  if not allow_download:
    raise DatasetError(f"{name} not found. " + _how_to_provide(name, list(files.values()),
                                                              searched))
  target = (_search_dirs(data_dir) or [DEFAULT_CACHE])[0] / name
  return {k: (target / f.name if (target / f.name).is_file() and _sha256(target / f.name) == f.sha256
              else _download(f, target)) for k, f in files.items()}


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Parses a gzipped idx file (MNIST format): magic 0x0803 images, 0x0801 labels."""
  try:
    raw = gzip.decompress(path.read_bytes())
  except (OSError, EOFError) as e:
    raise DatasetError(f"{path} is not a readable gzip file ({e}); replace it with the original")
  magic = int.from_bytes(raw[:4], "big")
  ndim = magic & 0xFF
  if magic >> 8 != 0x08 or ndim not in (1, 3):
    raise DatasetError(f"{path}: bad idx magic number {magic:#010x}")
  dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(dims)):
    raise DatasetError(f"{path}: idx header says {dims} but the file holds {data.size} bytes")
  return data.reshape(dims)


def load_mnist_files(data_dir: str | None, allow_download: bool) -> ArrayDataset:
  paths = locate_files("mnist", MNIST_FILES, data_dir, allow_download)
  arr = {k: read_idx(p) for k, p in paths.items()}
  return ArrayDataset("mnist", arr["train_x"][..., None], arr["train_y"].astype(np.int32),
                      arr["test_x"][..., None], arr["test_y"].astype(np.int32), 10)


def load_tfds(name: str, tfds_data_dir: str | None) -> ArrayDataset:
  """Reads a prepared tfds ArrayRecord copy with `tfds.data_source` (never downloads)."""
  import tensorflow_datasets as tfds
  try:
    sources = tfds.data_source(name, data_dir=tfds_data_dir, download=False)
  except Exception as e:  # tfds raises several types when nothing is prepared.
    raise DatasetError(f"no prepared tfds copy of {name} in {tfds_data_dir}: {e}. Prepare it "
                       "with TensorFlow (see itgan_jax/data/README.md) or use the original files "
                       "(--config.data.source=files --config.data.dir=DIR).") from e

  def split(s):
    xs = np.stack([ex["image"] for ex in s]).astype(np.uint8)
    ys = np.asarray([ex["label"] for ex in s], np.int32)
    return xs, ys
  tx, ty = split(sources["train"])
  vx, vy = split(sources["test"])
  return ArrayDataset(name, tx, ty, vx, vy, int(ty.max()) + 1 if name != "mnist" else 10)


_FILE_LOADERS = {"mnist": load_mnist_files}


def _tfds_prepared(name: str, tfds_data_dir: str | None) -> bool:
  return bool(tfds_data_dir) and (pathlib.Path(tfds_data_dir).expanduser() / name).is_dir()


def load_dataset(name: str, *, source: str = "auto", data_dir: str | None = None,
                 tfds_data_dir: str | None = None, allow_download: bool = False) -> ArrayDataset:
  """Loads `name` from 'files' (originals), 'tfds' (prepared copy) or 'auto' (tfds if prepared)."""
  if name not in _FILE_LOADERS:
    raise ValueError(f"config.data.name={name!r} is not one of {sorted(_FILE_LOADERS)}")
  if source not in ("auto", "files", "tfds"):
    raise ValueError(f"config.data.source={source!r} is not one of ['auto', 'files', 'tfds']")
  if source == "tfds" or (source == "auto" and _tfds_prepared(name, tfds_data_dir)):
    return load_tfds(name, tfds_data_dir)
  return _FILE_LOADERS[name](data_dir, allow_download)
