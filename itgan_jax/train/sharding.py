"""Data-parallel placement: parameters replicated, batches split along a 'data' mesh axis.

Under `jax.jit` with these shardings every batch reduction (batch-norm statistics, feature-matching
means, minibatch features) is over the *global* batch, i.e. exactly what the single-GPU official code
computed, on one CPU or on many devices alike.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (all by default), GSPMD ('Auto') axis type."""
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ValueError(f"num_devices={num_devices} but {len(devices)} devices are available")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """Shards dimension `batch_axis` over the mesh's data axis."""
  return NamedSharding(mesh, P(*([None] * batch_axis), DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"batch size {batch_size} is not divisible by the {n} devices of the mesh; "
                     f"choose a batch size that is a multiple of {n} or set --config.num_devices")
