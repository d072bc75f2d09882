"""One process of the two-process training test (tests/test_multihost_training.py).

  python tests/multiprocess_train_worker.py WORKDIR DATA_DIR OUT.npz [COORDINATOR NUM PID]

Trains the tiny MNIST SSL config in WORKDIR (resuming if it has checkpoints) on all devices of
the job, then process 0 writes the final D and G parameters to OUT.npz. With COORDINATOR NUM PID
the process first joins a `jax.distributed` job (2 CPU devices per process, host feeder).

`ITGAN_TEST_SIGTERM=PROCESS:STEP` makes process PROCESS (only) send itself SIGTERM once a chunk
ends at or after STEP; every process then stops at the same step with a checkpoint (loop
`_StopRequest.agreed`), prints `STOPPED <message>` and exits 0 without writing OUT.npz.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback


def main(argv):
  workdir, data_dir, out = argv[1:4]
  from itgan_jax.train import distributed
  if len(argv) > 4:
    distributed.initialize(argv[4], int(argv[5]), int(argv[6]), local_device_count=2)
  import jax
  import numpy as np
  from itgan_jax import experiment
  from tests.helpers import load_config
  config = load_config("mnist_ssl", "tiny", **{
      "data.dir": data_dir, "log.progress": False, "log.print_epochs": False,
      "evals.test_error.max_examples": 500})
  signal_at = os.environ.get("ITGAN_TEST_SIGTERM")
  sent = []

  def chunk_callback(step):
    if signal_at and not sent:
      process, at = (int(v) for v in signal_at.split(":"))
      if jax.process_index() == process and step >= at:
        sent.append(step)
        os.kill(os.getpid(), signal.SIGTERM)

  try:
    record = experiment.train(config, workdir, chunk_callback=chunk_callback)
  except KeyboardInterrupt as e:
    print(f"STOPPED {e}", flush=True)
    return
  exp = experiment.build(config)
  from itgan_jax.train import loop
  from itgan_jax.train.checkpoint import Checkpointer
  with Checkpointer(workdir) as ckpt:
    state, _ = ckpt.restore(loop.abstract_state(exp, 0),
                            sharding=jax.sharding.NamedSharding(
                                jax.sharding.Mesh(np.asarray(jax.devices()), ("data",)),
                                jax.sharding.PartitionSpec()))
  if jax.process_index() == 0:
    leaves = jax.tree.leaves((state.d.params, state.g.params))
    np.savez(out, *[np.asarray(x) for x in leaves], step=int(state.step),
             test_errors=record.get("test_errors_ema", -1), devices=jax.device_count())


if __name__ == "__main__":
  try:
    main(sys.argv)
  except BaseException:  # exit at once: peers waiting in a collective are killed by the launcher
    traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
  sys.stdout.flush()
  os._exit(0)
