"""One process of the two-process test of the streaming feeder (tests/test_image_folder.py).

Run as `python tests/streaming_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID FOLDER` (with
tests/multiprocess.worker_env, 2 CPU devices per process); prints one line `RESULT <json>`: the
indices this process decoded, whether every batch shard on its devices equals a direct decode of
those rows, and a replicated checksum of the whole global batch.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np

STEPS, BATCH, SIZE = 2, 8, 8


def plan(num_train: int) -> dict:
  """The chunk's index plan, the same in every process (as an epoch plan of (seed, epoch))."""
  return {"idx": np.random.default_rng(5).integers(0, num_train, (STEPS, BATCH)).astype(np.int32)}


def main(coordinator: str, num_processes: int, process_id: int, folder: str) -> dict:
  from itgan_jax.train import distributed
  distributed.initialize(coordinator, num_processes, process_id, local_device_count=2,
                         initialization_timeout=30, heartbeat_timeout_seconds=10,
                         shutdown_timeout_seconds=10)
  import jax
  import jax.numpy as jnp
  from itgan_jax.data import image_folder
  from itgan_jax.train import sharding, streaming

  ds = image_folder.load_image_folder(folder, SIZE)
  decoded = []

  class Spy:
    def read(self, idx, pool=None):
      decoded.extend(int(i) for i in np.asarray(idx).reshape(-1))
      return ds.read(idx, pool)

  feeder = streaming.StreamingFeeder({"x": Spy()}, {"y": ds.train_y},
                                     {"x": ("x", "idx"), "y": ("y", "idx")}, "tanh")
  mesh = sharding.make_mesh()
  p = plan(ds.num_train)
  feeder.prefetch(p, mesh)
  inputs = feeder.chunk_inputs(p, mesh)
  full = ds.read(p["idx"].reshape(-1)).reshape((STEPS, BATCH, SIZE, SIZE, 3))
  shards_ok = all(np.array_equal(np.asarray(s.data), full[s.index])
                  for s in inputs["x"].addressable_shards)
  labels_ok = all(np.array_equal(np.asarray(s.data), ds.train_y[p["idx"]][s.index])
                  for s in inputs["y"].addressable_shards)
  checksum = jax.jit(lambda x: jnp.sum(x.astype(jnp.int32) * jnp.arange(1, BATCH + 1)[None, :,
                                                                                   None, None, None]),
                     out_shardings=sharding.replicated(mesh))(inputs["x"])
  want = int(np.sum(full.astype(np.int64) * np.arange(1, BATCH + 1)[None, :, None, None, None]))
  feeder.close()
  return {"decoded": decoded, "shape": list(inputs["x"].shape), "shards_ok": shards_ok,
          "labels_ok": labels_ok, "checksum": int(np.asarray(checksum)), "want": want,
          "prefetched": feeder.stats["prefetched"], "plan": p["idx"].tolist()}


if __name__ == "__main__":
  try:
    result = main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    print("RESULT " + json.dumps(result), flush=True)
  except BaseException:  # noqa: BLE001 - exit at once (see tests/multiprocess_worker.py).
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(1)
