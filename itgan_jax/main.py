r"""Trains an experiment described by a config file.

  python -m itgan_jax.main --config=configs/mnist_ssl.py --workdir=runs/mnist_ssl_100
  python -m itgan_jax.main --config=configs/mnist_ssl.py:labels=50 --config.train.num_epochs=10 \
      --workdir=runs/mnist_50

Rerunning the same command resumes from the newest checkpoint in --workdir. Many hosts: run the
same command on every host (README, "Many hosts"); `--coordinator_address`, `--num_processes`,
`--process_id` or the usual environment start `jax.distributed`.
"""

from __future__ import annotations

import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from itgan_jax import config_args

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "many processes: host:port of process 0 (default: "
    "$JAX_COORDINATOR_ADDRESS, or what jax.distributed detects on SLURM / Open MPI / TPU pods)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "many processes: the job's processes "
                                      "(default: $JAX_NUM_PROCESSES or detected)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "many processes: this process's index "
                                   "(default: $JAX_PROCESS_ID or detected)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from itgan_jax.train import distributed
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)  # 1: no-op
  import jax  # after flag parsing, so XLA_FLAGS set by the caller apply.

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # library chatter (orbax) off; --verbosity=0 for all

  from itgan_jax import experiment
  from itgan_jax.train import loop
  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  logging.info("JAX %s, %d %s device(s), process %d/%d", jax.__version__, jax.device_count(),
               jax.default_backend(), jax.process_index(), jax.process_count())
  if overrides:
    logging.info("config overrides: %s", overrides)
  try:
    config = _CONFIG.value
    exp = experiment.build(config)
    record = loop.train_and_evaluate(exp, config, _WORKDIR.value)
  except KeyboardInterrupt as e:  # exit status 128 + signal: 143 for SIGTERM, 130 for SIGINT
    print(str(e) or "interrupted; rerun the same command to resume", file=sys.stderr)
    sys.exit(128 + getattr(e, "signum", signal.SIGINT))
  except (loop.NonFiniteLossError, ValueError, RuntimeError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if "test_errors_ema" not in record:
    scalars = {k: v for k, v in record.items() if isinstance(v, (int, float))
               and k not in ("epoch", "step", "epoch_time_s", "steps_per_s")}
    print(f"final (epoch {record.get('epoch')}, workdir {os.path.abspath(_WORKDIR.value)}): "
          + " ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
  else:
    n = record["test_errors_ema"]
    print(f"final test error (EMA parameters): {n} errors = {100 * record['test_err_ema']:.2f}% | "
          f"raw parameters: {record['test_errors_raw']} errors = "
          f"{100 * record['test_err_raw']:.2f}% (epoch {record['epoch']}, workdir "
          f"{os.path.abspath(_WORKDIR.value)})")


if __name__ == "__main__":
  app.run(main, flags_parser=config_args.parse_flags_or_exit)
