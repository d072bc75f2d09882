"""Data-parallel placement: parameters replicated, batches split along a 'data' mesh axis (a
variant may split some state leaves over the same axis: `chunk.state_sharding`).

On one process or many (`distributed.py`): each process feeds the batch rows its own devices hold
(`process_batch_slice`, `global_batch_array`) and places values every process holds alike
(`replicated_array`) without cross-process traffic.

Under `jax.jit` with these shardings every batch reduction (batch-norm statistics, feature-matching
means, minibatch features) is over the *global* batch, i.e. exactly what the single-GPU official code
computed, on one CPU or on many devices alike.
"""

from __future__ import annotations

from typing import Any

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


def _data_axis_size(mesh: Mesh) -> int:
  if DATA_AXIS not in mesh.shape:
    raise ValueError(f"the mesh has no {DATA_AXIS!r} axis (axes: {mesh.axis_names})")
  return mesh.shape[DATA_AXIS]


def process_batch_slice(global_batch: int, mesh: Mesh) -> slice:
  """The rows of a global batch split over `mesh`'s data axis that live on this process's devices.

  Computed from the sharding's device -> rows map and each device's `process_index`, not from an
  assumed layout. With one process it is the whole batch.

  Args:
    global_batch: the number of rows of the global batch; a multiple of the data axis size.
    mesh: the mesh the batch is sharded over (along `sharding.DATA_AXIS`).

  Returns:
    `slice(start, stop)` of the global rows this process feeds (`stop - start` =
    `global_batch * local data shards / data axis size`).

  Raises:
    ValueError: the batch does not divide over the data axis, this process owns no device of the
      mesh, or its rows are not one contiguous block (a mesh whose device order interleaves
      processes; build it from `jax.devices()` order, as `sharding.make_mesh` does).
  """
  n = _data_axis_size(mesh)
  if global_batch < 1 or global_batch % n:
    raise ValueError(f"global batch {global_batch} is not a positive multiple of the mesh's "
                     f"{n} data shards")
  spec = NamedSharding(mesh, P(DATA_AXIS))
  me = jax.process_index()
  rows = sorted({idx[0].indices(global_batch)[:2]
                 for device, idx in spec.devices_indices_map((global_batch,)).items()
                 if device.process_index == me})
  if not rows:
    raise ValueError(f"process {me} owns no device of the mesh "
                     f"(devices {[d.id for d in mesh.devices.flat]}); every process of the job "
                     "must hold a part of a mesh it feeds batches to")
  for (_, stop), (start, _) in zip(rows, rows[1:]):
    if stop != start:
      raise ValueError(f"process {me} owns the non-contiguous batch rows {rows} of this mesh; "
                       "order the mesh's devices by process (jax.devices() order)")
  return slice(rows[0][0], rows[-1][1])


def global_batch_array(local_rows: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
  """Assembles the global batch array from the rows this process holds.

  Each process passes the rows `process_batch_slice(global_batch, mesh)` of the global batch (the
  same rows along `batch_axis`, all of every other axis); the result is one global `jax.Array`
  sharded over the data axis, as `sharding.batch_sharded(mesh, batch_axis)`. With one process this
  is `jax.device_put(local_rows, that sharding)`.

  Args:
    local_rows: a host array (or a pytree of them, e.g. a dict of per-step index plans), each with
      this process's share of the batch along `batch_axis`.
    mesh: the mesh (data axis `sharding.DATA_AXIS`).
    batch_axis: the axis of the batch rows (1 for `(steps, batch, ...)` chunks scanned over steps).

  Returns:
    A global `jax.Array` (or the same pytree of them) whose batch axis is
    `local rows * data axis size / this process's data shards`.

  Raises:
    ValueError: a leaf has too few dimensions, or its local rows do not match this process's share.
  """
  n = _data_axis_size(mesh)
  spec = batch_sharded(mesh, batch_axis)
  me = jax.process_index()
  local_shards = len({idx[0].indices(n)[:2] for device, idx in
                      NamedSharding(mesh, P(DATA_AXIS)).devices_indices_map(
                          (n,)).items() if device.process_index == me})

  def one(x):
    x = np.asarray(x)
    if x.ndim <= batch_axis:
      raise ValueError(f"a local batch of shape {x.shape} has no batch axis {batch_axis}")
    rows = x.shape[batch_axis]
    if local_shards == 0:
      process_batch_slice(n, mesh)  # raises its "owns no device" error.
    if rows % local_shards:
      raise ValueError(f"{rows} local rows along axis {batch_axis} do not split over this "
                       f"process's {local_shards} of the mesh's {n} data shards")
    global_batch = rows // local_shards * n
    owned = process_batch_slice(global_batch, mesh)
    assert owned.stop - owned.start == rows, (owned, rows)
    shape = x.shape[:batch_axis] + (global_batch,) + x.shape[batch_axis + 1:]
    if jax.process_count() == 1:
      return jax.device_put(x, spec)
    return jax.make_array_from_process_local_data(spec, x, shape)

  return jax.tree.map(one, local_rows)


def replicated_array(host_value: Any, mesh: Mesh) -> Any:
  """Places a value that every process holds identically on all devices of `mesh`, replicated.

  Each process copies its own host value onto its own devices (`jax.make_array_from_callback`),
  with no cross-process traffic and no check that the values agree: the caller guarantees they
  do (same seed, same files, same config). `jax.device_put(value, replicated sharding)` would
  instead all-gather the whole value across processes to assert equality (about 15x slower for
  50 MB on CPU), and a jitted call with host (numpy) inputs does no check at all, so differing
  values there silently make "replicated" results differ between processes.

  Args:
    host_value: an array-like (or a pytree of them: numpy arrays, Python scalars, fully
      addressable `jax.Array`s) identical in every process.
    mesh: the mesh to replicate over.

  Returns:
    The same pytree of global `jax.Array`s with sharding `NamedSharding(mesh, P())`; dtypes are
    JAX's canonical ones (float64 becomes float32 unless x64 is enabled).
  """
  spec = replicated(mesh)

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, spec, lambda index: x[index])

  return jax.tree.map(one, host_value)
