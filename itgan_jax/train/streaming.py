"""The streaming feeder: batches decoded on the host, per process, one chunk ahead of the devices.

For data that fits neither on the devices nor in host memory (ImageNet: 1.28M JPEGs). It keeps the
feeder contract of `input_pipeline.py` (`chunk_inputs(plan_chunk, mesh)` on the host, `batch(arrays,
row)` inside the step) and the variant's index plan, which stays deterministic in (seed, epoch):

  * per-process sharding: each process decodes only the batch rows its own devices hold
    (`sharding.process_batch_slice`) and the global batch is assembled with
    `sharding.global_batch_array`, as the host feeder does;
  * decoding: the distinct images of a chunk are decoded by a pool of `num_workers` threads
    (PIL releases the GIL while decoding and resizing);
  * prefetch: after dispatching a chunk the loop calls `prefetch(next plan rows, mesh)`; a
    background thread decodes them while the devices compute. `chunk_inputs` uses the prefetched
    result only when it was made for exactly the rows asked (the plan arrays are compared), and
    decodes synchronously otherwise, so prefetching never changes what a step sees;
  * uint8 leaves the host; `batch` converts images to the model range inside the step, so the step
    sees the same floats as with the other feeders.

Streams: `{batch key: (array name, plan stream)}`; an array name found in `sources` is streamed
(`source.read(indices, pool) -> uint8 (n, ...)`), one found in `arrays` (labels) is gathered from
host memory. A source stream may name a third plan stream, `(array name, plan stream, salt
stream)`: its int values go to `source.read(indices, pool, salts=...)` row by row (random crops
drawn from the plan, so they too are deterministic in (seed, epoch)).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Mapping

import jax
import numpy as np

from itgan_jax.data import preprocess
from itgan_jax.train import sharding as sharding_lib


class StreamingFeeder:
  """Decodes each process's rows of every chunk on the host (see the module docstring)."""

  def __init__(self, sources: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
               streams: Mapping[str, tuple[str, str]], scale: str, *, num_workers: int = 8,
               prefetch: bool = True):
    preprocess.value_range(scale)  # a clear error for an unknown scale, now
    for key, (name, *_) in streams.items():
      if name not in sources and name not in arrays:
        raise ValueError(f"batch key {key!r} reads {name!r}, which the streaming feeder has "
                         f"neither as a source ({sorted(sources)}) nor as an array "
                         f"({sorted(arrays)})")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
      raise ValueError(f"config.data.num_workers={num_workers!r} must be an integer >= 1 "
                       "(decoding threads per process)")
    self.sources, self.host_arrays = dict(sources), dict(arrays)
    self.streams, self.scale = dict(streams), scale
    self.prefetch_enabled = bool(prefetch)
    self._pool = concurrent.futures.ThreadPoolExecutor(num_workers, "itgan-decode")
    self._ahead = concurrent.futures.ThreadPoolExecutor(1, "itgan-prefetch")
    self._pending: tuple[dict, concurrent.futures.Future] | None = None
    self.stats = {"prefetched": 0, "decoded_now": 0}

  # --- host side ---------------------------------------------------------------------------------
  def put(self, mesh) -> dict:
    """Nothing lives on the devices between chunks."""
    del mesh
    return {}

  def local_rows(self, plan_chunk: Mapping[str, np.ndarray], mesh) -> dict[str, np.ndarray]:
    """This process's columns of the chunk's plan: `{stream: int (steps, local rows)}`."""
    plan = {stream: np.asarray(v) for stream, v in plan_chunk.items()}
    rows = sharding_lib.process_batch_slice(next(iter(plan.values())).shape[1], mesh)
    return {stream: v[:, rows] for stream, v in plan.items()}

  def gather(self, local_plan: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The uint8 / int32 values `(steps, local rows, ...)` of every batch key for `local_plan`."""
    out = {}
    for key, (name, stream, *salt) in self.streams.items():
      idx = np.asarray(local_plan[stream])
      if name in self.sources:
        kwargs = {"salts": np.asarray(local_plan[salt[0]]).reshape(-1)} if salt else {}
        values = self.sources[name].read(idx.reshape(-1), self._pool, **kwargs)
        out[key] = values.reshape(idx.shape + values.shape[1:])
      else:
        out[key] = self.host_arrays[name][idx]
    return out

  def prefetch(self, plan_chunk: Mapping[str, np.ndarray], mesh) -> None:
    """Starts decoding the rows of `plan_chunk` (the next chunk) in the background."""
    if not self.prefetch_enabled:
      return
    local = self.local_rows(plan_chunk, mesh)
    self._discard()
    self._pending = (local, self._ahead.submit(self.gather, local))

  def _discard(self) -> None:
    if self._pending is not None:
      self._pending[1].cancel()
      self._pending = None

  def chunk_inputs(self, plan_chunk: Mapping[str, np.ndarray], mesh) -> dict:
    """The chunk's batches as global arrays `(steps, batch, ...)` sharded along the batch axis."""
    local = self.local_rows(plan_chunk, mesh)
    values = None
    if self._pending is not None:
      pending_plan, future = self._pending
      self._pending = None
      if pending_plan.keys() == local.keys() and all(
          np.array_equal(pending_plan[k], local[k]) for k in local):
        values = future.result()  # re-raises a decode error of the prefetch thread
        self.stats["prefetched"] += 1
      else:
        future.cancel()
    if values is None:
      values = self.gather(local)
      self.stats["decoded_now"] += 1
    return sharding_lib.global_batch_array(values, mesh, batch_axis=1)

  def close(self) -> None:
    """Stops the threads (pending work is dropped)."""
    self._discard()
    self._ahead.shutdown(wait=False, cancel_futures=True)
    self._pool.shutdown(wait=False, cancel_futures=True)

  # --- device side -------------------------------------------------------------------------------
  def batch(self, arrays: Mapping[str, jax.Array], values: Mapping[str, jax.Array]) -> dict:
    """One step's batch: images (array names starting with 'x') as model-range floats."""
    del arrays
    return {key: preprocess.to_float(values[key], self.scale) if name.startswith("x")
            else values[key] for key, (name, *_) in self.streams.items()}
