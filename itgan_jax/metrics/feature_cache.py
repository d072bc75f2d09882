"""Block-wise on-disk cache of feature-extractor outputs, so long extractions resume after a kill.

FID of CIFAR-10 train vs test with the real Inception weights is ~60,000 forward passes at 299x299:
hours on a CPU. `features_in_blocks` splits the images into fixed blocks, keys each block by the
SHA-256 of (extractor fingerprint, requested outputs, block shape and bytes), and stores each
block's features as `<key>.npz` (written to a temporary name, then renamed: a killed run never
leaves a half-written block). Rerunning the same command reads the finished blocks and computes
the rest. A changed image, weight file or output list changes the key, so stale features are
never reused. Progress (images done, images/s, ETA) is logged per block.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import time
from typing import Callable, Mapping, Sequence

import numpy as np
from absl import logging


def fingerprint_arrays(arrays: Mapping[str, np.ndarray]) -> str:
  """SHA-256 over the sorted names, shapes, dtypes and bytes of `arrays` (e.g. flat weights)."""
  h = hashlib.sha256()
  for name in sorted(arrays):
    a = np.ascontiguousarray(np.asarray(arrays[name]))
    h.update(f"{name}|{a.shape}|{a.dtype.str}|".encode())
    h.update(memoryview(a).cast("B"))
  return h.hexdigest()


def block_key(fingerprint: str, outputs: Sequence[str], block: np.ndarray) -> str:
  block = np.ascontiguousarray(block)
  h = hashlib.sha256(f"{fingerprint}|{','.join(outputs)}|{block.shape}|{block.dtype.str}|".encode())
  h.update(memoryview(block).cast("B"))
  return h.hexdigest()


def _load_block(path: pathlib.Path, outputs: Sequence[str], count: int) -> dict | None:
  """The cached block at `path`, or None when absent or unreadable (then it is recomputed)."""
  if not path.exists():
    return None
  try:
    with np.load(path) as f:
      out = {name: f[name] for name in outputs}
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("feature cache: ignoring unreadable block %s (%s); recomputing it", path, e)
    return None
  if any(v.shape[0] != count for v in out.values()):
    logging.warning("feature cache: block %s has the wrong length; recomputing it", path)
    return None
  return out


def _save_block(path: pathlib.Path, features: Mapping[str, np.ndarray]) -> None:
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **features)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def features_in_blocks(images: np.ndarray, outputs: Sequence[str],
                       compute: Callable[[np.ndarray], Mapping[str, np.ndarray]], *,
                       block_size: int, cache_dir: str | os.PathLike | None = None,
                       fingerprint: str | None = None, label: str = "features",
                       ) -> dict[str, np.ndarray]:
  """{name: (N, ...)} = `compute` on consecutive blocks of `images`, cached under `cache_dir`.

  `compute(block) -> {name: (len(block), ...)}` must return every name of `outputs`. Without
  `cache_dir` the blocks are computed (with the same progress log) and nothing is written.
  """
  if block_size < 1:
    raise ValueError(f"block_size must be >= 1, got {block_size}")
  directory = None
  if cache_dir is not None:
    if fingerprint is None:
      raise ValueError("a feature cache needs the extractor's fingerprint")
    directory = pathlib.Path(cache_dir).expanduser()
    try:
      directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise OSError(f"cannot create the feature cache directory {directory}: {e}; pass a "
                    "writable directory (--feature_cache) or none") from e
  n = len(images)
  if n == 0:
    return {name: np.asarray(v) for name, v in compute(images).items() if name in outputs}
  parts: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
  start_time = time.perf_counter()
  computed = 0
  for start in range(0, n, block_size):
    block = images[start:start + block_size]
    feats = path = None
    if directory is not None:
      path = directory / f"{block_key(fingerprint, outputs, block)}.npz"
      feats = _load_block(path, outputs, len(block))
    if feats is None:
      feats = {name: np.asarray(v) for name, v in compute(block).items()}
      missing = [name for name in outputs if name not in feats]
      if missing:
        raise KeyError(f"the extractor did not return {missing}")
      feats = {name: feats[name] for name in outputs}
      if path is not None:
        _save_block(path, feats)
      computed += len(block)
    for name in outputs:
      parts[name].append(feats[name])
    done = min(start + block_size, n)
    if computed and n > block_size:
      rate = computed / max(time.perf_counter() - start_time, 1e-9)
      logging.info("%s: %d/%d images (%.2f images/s, ETA %.0f s)%s", label, done, n, rate,
                   (n - done) / rate, f", cache {directory}" if directory else "")
  return {name: np.concatenate(p, axis=0) for name, p in parts.items()}
