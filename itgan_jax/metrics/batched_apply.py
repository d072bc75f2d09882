"""A feature network applied in fixed-size, zero-padded, data-parallel batches.

The one mechanism behind `inception.InceptionFeatureExtractor` and
`classifier.ClassifierFeatureExtractor`: the images go through `module.apply` in batches of one
size (the last batch zero-padded, so one compilation per input shape), the batch axis sharded over
the devices with `jax.jit` + `NamedSharding` (parameters replicated), one batch in flight while
the previous one is copied back to the host. Single-process only.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class BatchedApply:
  """`module.apply({'params': params}, images)` over any number of images, as float32 numpy.

  Args:
    module: a Flax module whose `apply` returns a dict of (batch, ...) arrays.
    params: its `params` tree.
    batch_size: images per step, rounded up to a multiple of the device count.
    devices: devices to shard the batch over (default: all local devices).
  """

  def __init__(self, module: nn.Module, params: Mapping[str, Any], *, batch_size: int,
               devices: Sequence[jax.Device] | None = None):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.devices = list(devices) if devices is not None else jax.local_devices()
    n = len(self.devices)
    self.batch_size = int(math.ceil(batch_size / n) * n)

    def apply(p, images):
      return module.apply({"params": p}, images)

    if n > 1:
      mesh = Mesh(np.asarray(self.devices), ("batch",))
      self._data_sharding = NamedSharding(mesh, PartitionSpec("batch"))
      replicated = NamedSharding(mesh, PartitionSpec())
      self._params = jax.device_put(params, replicated)
      self._apply = jax.jit(apply, in_shardings=(replicated, self._data_sharding),
                            out_shardings=self._data_sharding)
    else:
      self._data_sharding = self.devices[0]
      self._params = jax.device_put(params, self.devices[0])
      self._apply = jax.jit(apply)

  def __call__(self, images: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
    """{name: float32 (N, ...)} for each of `outputs`, of validated uint8 images (N, H, W, C).

    Args:
      images: the images, already checked by the caller (dtype, shape).
      outputs: names of the module's outputs to return.

    Returns:
      The outputs of the N images in order (N may be 0: the arrays are then empty with the
      module's trailing shapes).
    """
    results: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    pending = None
    for start in range(0, images.shape[0], self.batch_size):
      chunk = images[start:start + self.batch_size]
      valid = chunk.shape[0]
      if valid < self.batch_size:
        pad = np.zeros((self.batch_size - valid,) + chunk.shape[1:], chunk.dtype)
        chunk = np.concatenate([chunk, pad], axis=0)
      out = self._apply(self._params, jax.device_put(chunk, self._data_sharding))
      if pending is not None:  # keep one batch in flight while copying the previous one back
        _collect(results, *pending)
      pending = (out, valid)
    if pending is not None:
      _collect(results, *pending)
    if images.shape[0] == 0:
      shapes = jax.eval_shape(self._apply, self._params,
                              jax.ShapeDtypeStruct((self.batch_size,) + images.shape[1:],
                                                   images.dtype))
      return {name: np.zeros((0,) + shapes[name].shape[1:], np.float32) for name in outputs}
    return {name: np.concatenate(parts, axis=0) for name, parts in results.items()}


def _collect(results: dict[str, list[np.ndarray]], out: Mapping[str, jax.Array],
             valid: int) -> None:
  for name, parts in results.items():
    parts.append(np.asarray(out[name])[:valid].astype(np.float32))
