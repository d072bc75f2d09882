"""Input pipelines: turn a chunk of a variant's index plan into the batches its steps see.

A variant declares its batch contract as *streams*: `{batch key: (array name, plan stream)}`, e.g.
`{"x_lab": ("x", "lab"), "y_lab": ("y", "lab"), "x_unl": ("x", "unl")}`. Its epoch plan gives
one int32 `(steps, global batch)` index array per plan stream. A feeder has two halves:

  `chunk_inputs(plan_chunk, mesh)` (host, once per chunk) -> the arrays the jitted chunk scans over
  `batch(arrays, inputs_row)` (device, inside the step)    -> the step's batch (floats, labels)

Two feeders implement it:

* `DeviceFeeder` (one process, data that fits on the devices: MNIST, CIFAR, SVHN): the uint8
  arrays live on every device once; the host ships only the small index plan and the batches are
  gathered inside the jitted step, so the host never stalls the devices.
* `HostFeeder` (many processes, or data too large for the devices): each process gathers, on the
  host, only the rows of every batch that its own devices hold, and the global batch is assembled
  with `jax.make_array_from_process_local_data`. The uint8 -> float conversion still happens inside
  the step, so both feeders give the step bit-identical batches.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.data import preprocess
from itgan_jax.train import sharding as sharding_lib

FEEDERS = ("auto", "device", "host")


def _check_streams(arrays: Mapping[str, np.ndarray], streams: Mapping[str, tuple[str, str]]):
  for key, (array_name, _) in streams.items():
    if array_name not in arrays:
      raise ValueError(f"batch key {key!r} reads array {array_name!r}, which the feeder does not "
                       f"have (arrays: {sorted(arrays)})")


def _to_batch(values: dict, streams, scale: str) -> dict:
  """uint8 images -> model-range floats (arrays whose name starts with 'x'); others as they are."""
  return {key: preprocess.to_float(values[key], scale) if streams[key][0].startswith("x")
          else values[key] for key in streams}


def _local_rows_to_global(plan: dict, mesh, take_rows):
  """`take_rows(plan, rows)` -> this process's rows of the chunk's batches (axis 1), assembled
  into global arrays sharded over the mesh's data axis."""
  rows = sharding_lib.process_batch_slice(next(iter(plan.values())).shape[1], mesh)
  return sharding_lib.global_batch_array(take_rows(plan, rows), mesh, batch_axis=1)


class _Feeder:
  """The host arrays, the variant's streams and the pixel scale (shared by both feeders)."""

  def __init__(self, arrays: Mapping[str, np.ndarray], streams: Mapping[str, tuple[str, str]],
               scale: str):
    _check_streams(arrays, streams)
    self.host_arrays = dict(arrays)
    self.streams = dict(streams)
    self.scale = scale


class DeviceFeeder(_Feeder):
  """Gathers training batches on device from index plans `{stream: (steps, batch) int32}`."""

  def put(self, mesh) -> dict[str, jax.Array]:
    """Copies the arrays to the devices of `mesh` (replicated) once; `None`: the default device."""
    if mesh is None:
      return jax.device_put(self.host_arrays)
    return sharding_lib.replicated_array(self.host_arrays, mesh)

  def chunk_inputs(self, plan_chunk: Mapping[str, np.ndarray], mesh) -> dict:
    """The chunk's index plan (the same on every process), sharded along its batch axis (1)."""
    return _local_rows_to_global(
        {k: np.asarray(v, np.int32) for k, v in plan_chunk.items()}, mesh,
        lambda plan, rows: {k: v[:, rows] for k, v in plan.items()})

  def batch(self, arrays: Mapping[str, jax.Array], idx: Mapping[str, jax.Array]) -> dict:
    """One step's batch from its plan row: images as model-range floats, labels as int32."""
    values = {key: jnp.take(arrays[name], idx[stream], axis=0)
              for key, (name, stream) in self.streams.items()}
    return _to_batch(values, self.streams, self.scale)

  # The name of earlier releases.
  gather = batch


class HostFeeder(_Feeder):
  """Gathers each process's share of every batch on the host (see the module docstring)."""

  def put(self, mesh) -> dict[str, jax.Array]:
    """Nothing lives on the devices between chunks."""
    del mesh
    return {}

  def chunk_inputs(self, plan_chunk: Mapping[str, np.ndarray], mesh) -> dict:
    """uint8 / int32 batches `(steps, batch, ...)`; this process gathers only its own rows."""
    plan = {stream: np.asarray(v) for stream, v in plan_chunk.items()}
    return _local_rows_to_global(
        plan, mesh, lambda _, rows: {key: self.host_arrays[name][plan[stream][:, rows]]
                                     for key, (name, stream) in self.streams.items()})

  def batch(self, arrays: Mapping[str, jax.Array], values: Mapping[str, jax.Array]) -> dict:
    del arrays
    return _to_batch(dict(values), self.streams, self.scale)


def make_feeder(kind: str, arrays: Mapping[str, np.ndarray],
                streams: Mapping[str, tuple[str, str]], scale: str):
  """`kind` 'device', 'host', or 'auto' (device on one process, host on several)."""
  if kind not in FEEDERS:
    raise ValueError(f"data.feeder={kind!r} is not one of {FEEDERS}")
  if kind == "auto":
    kind = "device" if jax.process_count() == 1 else "host"
  return (DeviceFeeder if kind == "device" else HostFeeder)(arrays, streams, scale)
