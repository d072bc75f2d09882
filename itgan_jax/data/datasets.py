"""Datasets as in-memory uint8 arrays, from the original files (verified) or a prepared tfds copy.

Original files are looked for, in order, in: the `data_dir` argument (config `data.dir`), the
directory in the environment variable ITGAN_DATA_DIR, and the download cache
(`$XDG_CACHE_HOME/itgan_jax/data`, default ~/.cache/itgan_jax/data); in each root first under
`<root>/<name>/` (e.g. `<root>/mnist/`, `<root>/cifar10/`, `<root>/svhn/`), then directly in
`<root>/`. With `allow_download=True`, missing files are fetched from their standard mirrors into
`<first root>/<name>/` (temp file + sha256 check + rename); nothing is downloaded otherwise.

A tfds copy (`source='tfds'`, or `'auto'` when one is prepared in `tfds_data_dir`) is read with
`tfds.data_source(..., download=False)`; it needs no TensorFlow but must have been prepared in the
ArrayRecord format (see tfds_prep.py). tfds stores examples in a hashed order; it is restored to the
original order and checked against the original content fingerprints (where they are recorded:
not yet for SVHN, whose tfds copy loads in the original order from its `id` feature, unverified).

To add a dataset: write `<name>.py` with a `READER` (base.Reader) and add it to `READERS`.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import tempfile
import urllib.request
import warnings

import numpy as np

from itgan_jax.data import cifar10, mnist, svhn
from itgan_jax.data.base import (ArrayDataset, DatasetCorruptError, DatasetError,
                                 DatasetNotFoundError, FileSpec, Reader, check_sha256,
                                 sha256_file)

__all__ = ["ArrayDataset", "DatasetError", "DatasetNotFoundError", "DatasetCorruptError",
           "READERS", "ENV_VAR", "load_dataset", "load_files", "load_tfds", "find_files",
           "search_roots", "default_cache_dir", "tfds_prepared", "tfds_shuffle_order"]

ENV_VAR = "ITGAN_DATA_DIR"
SOURCES = ("auto", "files", "tfds")
READERS: dict[str, Reader] = {r.name: r for r in (mnist.READER, cifar10.READER, svhn.READER)}
_TFDS_SPLITS = ("train", "test")


def default_cache_dir() -> pathlib.Path:
  """Where downloads go when neither `data_dir` nor ITGAN_DATA_DIR is given."""
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base).expanduser() / "itgan_jax" / "data"


def search_roots(data_dir: str | os.PathLike | None) -> list[pathlib.Path]:
  """The root directories searched, in order: data_dir, $ITGAN_DATA_DIR, the download cache."""
  roots = [pathlib.Path(d).expanduser() for d in (data_dir, os.environ.get(ENV_VAR)) if d]
  roots.append(default_cache_dir())
  return list(dict.fromkeys(roots))  # drop duplicates, keep order


def _reader(name: str) -> Reader:
  if name not in READERS:
    raise ValueError(f"config.data.name={name!r} is not one of {sorted(READERS)}")
  return READERS[name]


def _how_to_provide(reader: Reader, searched: list[str]) -> str:
  names = ", ".join(f.name for f in reader.files)
  urls = ", ".join(dict.fromkeys(f.urls[0].rsplit("/", 1)[0] + "/" for f in reader.files))
  lines = [f"Expected the original {reader.title} files: {names}.",
           "Searched (in order):"] + [f"  {s}" for s in searched] + [
      "Provide them in one of these ways:",
      f"  1. config data.dir: --config.data.dir=DIR (evaluate: --data_dir=DIR) with the files in "
      f"DIR/{reader.name}/ or DIR/;",
      f"  2. environment variable: export {ENV_VAR}=DIR (same layouts);",
      f"  3. --config.data.allow_download=True downloads and sha256-checks them into "
      f"DIR/{reader.name}/ (DIR = data.dir, ${ENV_VAR} or {default_cache_dir()}) from {urls};",
      f"  4. a tfds copy prepared in the ArrayRecord format (python -m itgan_jax.data.tfds_prep "
      f"--name={reader.name} --tfds_data_dir=TDIR, needs TensorFlow once): "
      f"--config.data.tfds_data_dir=TDIR (with data.source 'auto' or 'tfds')."]
  return "\n".join(lines)


def find_files(reader: Reader, data_dir: str | os.PathLike | None
               ) -> tuple[dict[str, pathlib.Path] | None, list[str]]:
  """First directory holding all of `reader.files`, and the list of searched places (with notes)."""
  searched = [] if data_dir else ["(data.dir not set)"]
  if not os.environ.get(ENV_VAR):
    searched.append(f"(${ENV_VAR} not set)")
  for root in search_roots(data_dir):
    for d in (root / reader.name, root):
      if not d.is_dir():
        searched.append(f"{d} (does not exist)")
        continue
      missing = [f.name for f in reader.files if not (d / f.name).is_file()]
      if not missing:
        return {f.name: d / f.name for f in reader.files}, searched + [str(d)]
      searched.append(f"{d} (missing: {', '.join(missing)})")
  return None, searched


def _download(spec: FileSpec, directory: pathlib.Path) -> pathlib.Path:
  """Fetches `spec` from its mirrors into `directory` atomically; sha256 checked before rename."""
  directory.mkdir(parents=True, exist_ok=True)
  target = directory / spec.name
  errors = []
  for url in spec.urls:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{spec.name}.", suffix=".part")
    try:
      logging.info("downloading %s to %s", url, target)
      with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
        while block := response.read(1 << 20):
          out.write(block)
      digest, size = sha256_file(tmp), os.path.getsize(tmp)
      if digest not in spec.sha256:
        errors.append(f"{url}: got {size:,} bytes with sha256 {digest}, expected "
                      f"{spec.size or 0:,} bytes with sha256 {spec.sha256[0]}")
        continue
      os.replace(tmp, target)
      return target
    except OSError as e:  # URLError is an OSError
      errors.append(f"{url}: {type(e).__name__}: {e}")
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
  raise DatasetNotFoundError(f"could not download {spec.name} into {directory}:\n  "
                             + "\n  ".join(errors))


def _existing_or_download(spec: FileSpec, directory: pathlib.Path) -> pathlib.Path:
  """Keeps an already downloaded, valid copy (partial earlier download); fetches the others."""
  path = directory / spec.name
  if path.is_file():
    try:
      check_sha256(path, spec)
      return path
    except DatasetCorruptError:
      pass  # replaced atomically by the download below
  return _download(spec, directory)


def load_files(name: str, data_dir: str | os.PathLike | None = None,
               allow_download: bool = False) -> ArrayDataset:
  """Loads `name` from its original files (searched as in the module docstring), verified."""
  reader = _reader(name)
  paths, searched = find_files(reader, data_dir)
  if paths is not None:
    used = next(iter(paths.values())).parent
    if data_dir and not pathlib.Path(data_dir).expanduser().is_dir():
      raise DatasetNotFoundError(
          f"data.dir={os.fspath(data_dir)!r} does not exist (a typo?); the {reader.title} files "
          f"are in {used}: name that directory, or leave data.dir unset to use ${ENV_VAR}")
    if data_dir and pathlib.Path(data_dir).expanduser() not in (used, used.parent):
      logging.warning("data.dir=%s lacks the %s files; using %s", data_dir, reader.title, used)
    else:
      logging.info("%s files: %s", reader.title, used)
  if paths is None:
    if not allow_download:
      raise DatasetNotFoundError(f"{reader.title} not found (downloads are off).\n"
                                 + _how_to_provide(reader, searched))
    target = search_roots(data_dir)[0] / reader.name
    try:
      paths = {f.name: _existing_or_download(f, target) for f in reader.files}
    except DatasetError as e:
      raise DatasetNotFoundError(f"{e}\n" + _how_to_provide(reader, searched)) from e
  try:
    return reader.read(paths)
  except DatasetCorruptError as e:
    raise DatasetCorruptError(f"{e}\n" + _how_to_provide(reader, searched)) from e


def tfds_prepared(name: str, tfds_data_dir: str | os.PathLike | None) -> bool:
  """Cheap check (no tfds import): is an ArrayRecord copy of `name` prepared in tfds_data_dir?"""
  if not tfds_data_dir:
    return False
  tfds_name = _reader(name).tfds_name
  for info in (pathlib.Path(tfds_data_dir).expanduser() / tfds_name).glob("*/dataset_info.json"):
    if all(any(info.parent.glob(f"{tfds_name}-{split}.array_record*")) for split in _TFDS_SPLITS):
      return True
  return False


def tfds_shuffle_order(split: str, num_examples: int) -> np.ndarray:
  """Original index of each record of a tfds-prepared split whose keys were 0..N-1.

  tfds writes examples sorted by md5(salt=split name, key=str(key)) (tensorflow_datasets
  core/shuffle.py, core/hashing.py); mnist and cifar10 use the example index as key.
  """
  import hashlib
  salted = hashlib.md5(split.encode())

  def key_hash(k: int) -> int:
    h = salted.copy()
    h.update(str(k).encode())
    return int(h.hexdigest(), 16)
  return np.asarray(sorted(range(num_examples), key=key_hash), np.int64)


def _ids_order(ids: list) -> np.ndarray | None:
  """Original indices from tfds 'id' features such as 'train_00042' (cifar10), if all parse."""
  order = []
  for i in ids:
    m = re.search(r"(\d+)$", i.decode() if isinstance(i, bytes) else str(i))
    if m is None:
      return None
    order.append(int(m.group(1)))
  order = np.asarray(order, np.int64)
  return order if np.array_equal(np.sort(order), np.arange(len(order))) else None


def _read_tfds_split(tfds, reader: Reader, split: str, tfds_data_dir) -> tuple:
  try:
    source = tfds.data_source(reader.tfds_name, split=split, data_dir=tfds_data_dir,
                              download=False)
    n = len(source)
  except Exception as e:  # tfds raises many types when nothing (usable) is prepared.
    where = tfds_data_dir or "the tfds default data dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    found = ("it looks prepared but tfds cannot read it"
             if tfds_prepared(reader.name, tfds_data_dir) else
             f"no {reader.tfds_name}/<version>/ directory with dataset_info.json and "
             f"{reader.tfds_name}-{{train,test}}.array_record-* files there")
    raise DatasetNotFoundError(
        f"no usable tfds ArrayRecord copy of {reader.tfds_name} (split {split!r}) in {where}: "
        f"{found}.\ntfds said: {type(e).__name__}: {e}\nPrepare one with TensorFlow installed "
        f"(python -m itgan_jax.data.tfds_prep --name={reader.name} --tfds_data_dir=DIR, see "
        f"itgan_jax/data/tfds_prep.py) or use the original files (--config.data.source=files "
        f"--config.data.dir=DIR).") from e
  x = np.empty((n,) + reader.image_shape, np.uint8)
  y = np.empty((n,), np.int32)
  ids = []
  for i in range(n):
    ex = source[i]
    image = np.asarray(ex["image"])
    if image.shape != reader.image_shape:
      raise DatasetCorruptError(f"tfds {reader.tfds_name}/{split}[{i}]: image {image.shape}, "
                                f"expected {reader.image_shape}")
    x[i] = image
    y[i] = int(ex["label"])
    if "id" in ex:
      ids.append(ex["id"])
  info = source.dataset_info
  num_classes = int(info.features["label"].num_classes)
  if num_classes != reader.num_classes:
    raise DatasetCorruptError(f"tfds {reader.tfds_name} has {num_classes} classes, expected "
                              f"{reader.num_classes}")
  return x, y, ids, bool(getattr(info, "disable_shuffling", False))


def load_tfds(name: str, tfds_data_dir: str | os.PathLike | None = None) -> ArrayDataset:
  """Reads a prepared tfds ArrayRecord copy (never downloads), restored to the original order.

  The order is recovered from the 'id' feature (cifar10) or by inverting tfds's hash shuffle
  (mnist); the result is compared with the original content fingerprints. If they do not match
  (other version, mock data), a warning is issued and `verified` is False.
  """
  reader = _reader(name)
  import tensorflow_datasets as tfds  # lazy: 0.5-1.5 s import, only needed here
  tfds_data_dir = os.fspath(pathlib.Path(tfds_data_dir).expanduser()) if tfds_data_dir else None
  arrays, verified, unknown = {}, True, []
  for split in _TFDS_SPLITS:
    x, y, ids, unshuffled = _read_tfds_split(tfds, reader, split, tfds_data_dir)
    order = _ids_order(ids) if len(ids) == len(y) else None
    if order is None:
      order = np.arange(len(y)) if unshuffled else tfds_shuffle_order(split, len(y))
    restored = np.empty_like(x), np.empty_like(y)
    restored[0][order], restored[1][order] = x, y
    if split not in reader.fingerprints:  # original content not recorded (SVHN): cannot verify
      verified = False
      unknown.append(split)
      arrays[split] = restored
    elif reader.fingerprint(*restored) == tuple(reader.fingerprints[split]):
      arrays[split] = restored
    elif reader.fingerprint(x, y) == tuple(reader.fingerprints[split]):
      arrays[split] = (x, y)
    else:
      verified = False
      arrays[split] = restored
  if unknown:
    warnings.warn(f"the tfds copy of {name} in {tfds_data_dir} cannot be verified: no content "
                  f"fingerprints of the original {reader.title} {unknown} are recorded "
                  f"(itgan_jax/data/{name}.py FINGERPRINTS); its order was restored from the 'id' "
                  "feature (or tfds's key hash), its content is unchecked. Use the original "
                  "files (--config.data.source=files) for a sha256-checked copy.", stacklevel=2)
  elif not verified:
    warnings.warn(f"the tfds copy of {name} in {tfds_data_dir} does not match the original "
                  f"{reader.title} content/order; the official labeled subset "
                  "(select_labeled) will not be reproduced exactly. Use the original files "
                  "(--config.data.source=files) for exact reproduction.", stacklevel=2)
  return ArrayDataset(name, arrays["train"][0], arrays["train"][1], arrays["test"][0],
                      arrays["test"][1], reader.num_classes, source="tfds", verified=verified)


def load_dataset(name: str, *, source: str = "auto", data_dir: str | os.PathLike | None = None,
                 tfds_data_dir: str | os.PathLike | None = None,
                 allow_download: bool = False) -> ArrayDataset:
  """Loads `name` ('mnist' | 'cifar10' | 'svhn') as uint8 NHWC / int32 arrays, original order.

  source: 'files' = original files (module docstring); 'tfds' = prepared tfds ArrayRecord copy in
  `tfds_data_dir`; 'auto' = tfds if `tfds_prepared(name, tfds_data_dir)`, else the files.
  Raises DatasetNotFoundError / DatasetCorruptError (both DatasetError) with instructions.
  """
  _reader(name)
  if source not in SOURCES:
    raise ValueError(f"config.data.source={source!r} is not one of {list(SOURCES)}")
  if source == "tfds" or (source == "auto" and tfds_prepared(name, tfds_data_dir)):
    return load_tfds(name, tfds_data_dir)
  return load_files(name, data_dir, allow_download)
