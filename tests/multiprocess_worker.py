"""One process of the two-process test of itgan_jax.train.distributed (tests/test_distributed.py).

Run as `python tests/multiprocess_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID [MODE]` in every
process of the job (with tests/multiprocess.worker_env); prints one line `RESULT <json>` on success.
MODE `env` passes the three values through JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID instead of arguments; `fail` makes process 1 raise after the start. The
data and the computation (`make_data`, `compute`) are importable so that the test computes the
single-process reference with the same code.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np

STEPS, BATCH, DIM = 3, 8, 5


def make_data():
  """The global `(steps, batch, dim)` chunk, a weight matrix and an integer-valued chunk."""
  rng = np.random.RandomState(0)
  x = rng.randn(STEPS, BATCH, DIM).astype(np.float32)
  w = rng.randn(DIM, DIM).astype(np.float32)
  xi = rng.randint(-4, 5, size=(STEPS, BATCH, DIM)).astype(np.float32)
  return x, w, xi


def compute(mesh, w, x, xi):
  """Scans over steps; per step, global-batch means of tanh(x @ w) and exact sums of xi @ w_int.

  `x` and `xi` are global arrays sharded on axis 1 (batch), `w` is replicated; the outputs are
  replicated, so every process can read them with np.asarray.
  """
  import jax
  import jax.numpy as jnp
  from itgan_jax.train import sharding as sharding_lib

  def run(w, x, xi):
    w_int = jnp.round(w * 2)  # small integers: the sums below are exact in float32.

    def body(carry, xs):
      xr, xir = xs
      xr = jax.lax.with_sharding_constraint(xr, sharding_lib.batch_sharded(mesh, 0))
      mean = jnp.mean(jnp.tanh(xr @ w), axis=0)
      exact = jnp.sum(xir @ w_int, axis=0)
      return carry + jnp.mean(mean), (mean, exact)

    return jax.lax.scan(body, jnp.zeros((), jnp.float32), (x, xi))

  repl = sharding_lib.replicated(mesh)
  data = sharding_lib.batch_sharded(mesh, 1)
  fn = jax.jit(run, in_shardings=(repl, data, data), out_shardings=repl)
  total, (means, exact) = fn(w, x, xi)
  return {"total": float(np.asarray(total)), "means": np.asarray(means).tolist(),
          "exact": np.asarray(exact).tolist()}


def main(coordinator: str, num_processes: int, process_id: int, mode: str = "args") -> dict:
  from itgan_jax.train import distributed

  timeouts = dict(initialization_timeout=30, heartbeat_timeout_seconds=10,
                  shutdown_timeout_seconds=10)
  if mode == "env":
    os.environ.update(JAX_COORDINATOR_ADDRESS=coordinator, JAX_NUM_PROCESSES=str(num_processes),
                      JAX_PROCESS_ID=str(process_id))
    started = distributed.initialize(**timeouts)
  else:
    started = distributed.initialize(coordinator, num_processes, process_id,
                                     local_device_count=2, **timeouts)
  import jax

  # A second call with the same (or no) arguments is a no-op; other arguments are refused.
  again = distributed.initialize(coordinator, num_processes, process_id, local_device_count=2)
  try:
    distributed.initialize(num_processes=num_processes + 1)
    clash = None
  except RuntimeError as e:
    clash = str(e)
  if mode == "fail" and process_id == 1:
    raise RuntimeError("worker 1 fails on purpose")
  from jax.sharding import Mesh
  from itgan_jax.train import sharding as sharding_lib

  mesh = sharding_lib.make_mesh()
  x, w, xi = make_data()
  rows = sharding_lib.process_batch_slice(BATCH, mesh)
  local = {"x": x[:, rows], "xi": xi[:, rows]}
  batch = sharding_lib.global_batch_array(local, mesh, batch_axis=1)
  w_global = sharding_lib.replicated_array(w, mesh)
  out = compute(mesh, w_global, batch["x"], batch["xi"])
  out.update(
      started=started, again=again, clash=clash, device_count=jax.device_count(), process_count=jax.process_count(),
      process_index=jax.process_index(), is_main=distributed.is_main_process(),
      slice=[rows.start, rows.stop],
      shape=list(batch["x"].shape),
      # The global batch rows held on this process's devices, read from the array itself.
      shard_rows=sorted(s.index[1].indices(BATCH)[:2] for s in batch["x"].addressable_shards),
      shard_data_ok=all(np.array_equal(np.asarray(s.data), x[s.index])
                        for s in batch["x"].addressable_shards),
      replicated_ok=bool(np.array_equal(np.asarray(w_global), w)),
      replicated_sharding=str(w_global.sharding.spec))
  devs = jax.devices()
  interleaved = Mesh(np.asarray([devs[0], devs[2], devs[1], devs[3]]), (sharding_lib.DATA_AXIS,))
  for key, fn in (("interleaved_error", lambda: sharding_lib.process_batch_slice(BATCH, interleaved)),
                  ("wrong_rows_error",
                   lambda: sharding_lib.global_batch_array(x[:, :3], mesh, batch_axis=1))):
    try:
      fn()
      out[key] = None
    except ValueError as e:
      out[key] = str(e)
  return out


if __name__ == "__main__":
  try:
    result = main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:5])
    print("RESULT " + json.dumps(result), flush=True)
  except BaseException:  # noqa: BLE001 - exit at once, see below.
    traceback.print_exc()
    sys.stderr.flush()
    # A normal exit would wait at JAX's shutdown barrier for the other process, which itself waits
    # in a collective for this one: exit now so that the launcher sees the failure at once.
    os._exit(1)
