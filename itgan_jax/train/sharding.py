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


def _mesh_of(mesh_or_sharding) -> Mesh | None:
  if mesh_or_sharding is None or isinstance(mesh_or_sharding, Mesh):
    return mesh_or_sharding
  return mesh_or_sharding.mesh


def put_replicated(value, mesh_or_sharding):
  """`value` (the same host array on every process) replicated on every device of the mesh.

  On one process this is `jax.device_put`; on several it assembles the global array from each
  process's copy (`jax.make_array_from_callback`). `None` puts it on the default device.
  """
  mesh = _mesh_of(mesh_or_sharding)
  if mesh is None:
    return jax.device_put(value)
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(value, sharding)
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def process_rows(global_batch: int, mesh: Mesh) -> slice:
  """The contiguous rows of a batch sharded over `mesh`'s data axis that this process's devices
  hold (all rows on one process). Raises if this process's devices do not hold one contiguous
  block, which `make_mesh` (devices in process order) guarantees."""
  check_batch_divisible(global_batch, mesh)
  devices = list(mesh.devices.flat)
  per_device = global_batch // len(devices)
  mine = [i for i, d in enumerate(devices) if d.process_index == jax.process_index()]
  if not mine or mine != list(range(mine[0], mine[0] + len(mine))):
    raise ValueError("this process's devices are not one contiguous block of the mesh; build the "
                     "mesh with sharding.make_mesh (devices in process order)")
  return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


def global_batch(tree, mesh: Mesh, batch_axis: int = 0, local: bool = False):
  """Host arrays -> global arrays sharded along `batch_axis` over the data axis.

  `local=False`: every process passes the whole arrays (e.g. an index plan all processes compute
  alike). `local=True`: each process passes only its `process_rows` along `batch_axis`, and the
  global array is assembled with `jax.make_array_from_process_local_data`.
  """
  sharding = batch_sharded(mesh, batch_axis)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  if not local:
    def one(x):
      rows = process_rows(x.shape[batch_axis], mesh)
      x = np.asarray(x)
      return np.take(x, np.arange(x.shape[batch_axis])[rows], axis=batch_axis)
    tree = jax.tree.map(one, tree)

  def assemble(x):
    shape = list(x.shape)
    shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, np.asarray(x), tuple(shape))
  return jax.tree.map(assemble, tree)
