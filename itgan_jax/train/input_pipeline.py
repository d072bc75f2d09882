"""Device-resident input pipeline for datasets that fit in accelerator memory (MNIST, CIFAR, SVHN).

The training images live on the devices once (uint8, replicated); the host only ships each chunk's
small integer index plan, and the batches are gathered and converted to floats inside the jitted
step. The host therefore never stalls the device: while a chunk of steps runs, the next plan is
computed and transferred (JAX dispatch is asynchronous).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.data import preprocess

# batch key -> (array name, plan stream name)
SSL_STREAMS = {"x_lab": ("x", "lab"), "y_lab": ("y", "lab"), "x_unl": ("x", "unl"),
               "x_unl2": ("x", "unl2")}
GAN_STREAMS = {"x": ("x", "idx")}


class DeviceFeeder:
  """Gathers training batches on device from index plans `{stream: (steps, batch) int32}`."""

  def __init__(self, arrays: Mapping[str, np.ndarray], streams: Mapping[str, tuple[str, str]],
               scale: str):
    self.host_arrays = dict(arrays)
    self.streams = dict(streams)
    self.scale = scale

  def put(self, sharding) -> dict[str, jax.Array]:
    """Copies the arrays to the devices (replicated) once."""
    return {k: jax.device_put(v, sharding) for k, v in self.host_arrays.items()}

  def gather(self, arrays: Mapping[str, jax.Array], idx: Mapping[str, jax.Array]) -> dict:
    """One step's batch: images converted to the model's float range, labels as int32."""
    batch = {}
    for key, (array_name, stream) in self.streams.items():
      values = jnp.take(arrays[array_name], idx[stream], axis=0)
      if array_name == "x":
        values = preprocess.to_float(values, self.scale)
      batch[key] = values
    return batch
