r"""Records the numbers of tiny training runs, to pin the training engine's behaviour bit for bit.

  python -m tests.reference.record_engine_reference --data_dir=../shared/data \
      --out=tests/data/engine_reference.json

Written from the code before the engine refactor (issue 12, commit 204966c, with this file copied
in and `experiment.train` read as `loop.train_and_evaluate`), once per CPU model: XLA:CPU's kernels
round differently on different CPU families, so the file keeps one reference per `cpu_model()` under
"by_cpu", and a run adds or replaces only its own CPU's entry. `tests/test_engine_reference.py` reruns
the same runs and compares. Each run: one device, a tiny config, every record of `metrics.jsonl`
(floats as exact reprs).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# As tests/conftest.py: XLA:CPU's kernels round differently with 8 fake devices (even on one of
# them), so the reference is recorded under the test suite's flags.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# name -> (config file, config argument, overrides); all on one device so results are bit-exact.
RUNS = {
    "mnist_ssl_tiny": ("mnist_ssl", "tiny", {}),
    "mnist_ssl_tiny_techniques": ("mnist_ssl", "tiny", {
        "loss.generator": "minimax", "train.g_steps_per_d_step": 2,
        "loss.label_smoothing": 0.9, "optim.historical_averaging_d": 1e-3,
        "optim.historical_averaging_g": 1e-3, "model.minibatch_kernels": 8}),
}
DETERMINISTIC_KEYS = ("epoch", "step", "loss_lab", "loss_unl", "loss_gen", "train_err", "d_real",
                      "d_fake", "lr", "test_errors_ema", "test_errors_raw")


def cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def config_for(name: str, data_dir: str):
  from tests.helpers import load_config  # pylint: disable=import-outside-toplevel
  file, arg, overrides = RUNS[name]
  return load_config(file, arg, **{"data.dir": data_dir, "num_devices": 1, "log.progress": False,
                                   "log.print_epochs": False, **overrides})


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  from itgan_jax import experiment  # pylint: disable=import-outside-toplevel
  runs = {}
  for name in RUNS:
    config = config_for(name, args.data_dir)
    with tempfile.TemporaryDirectory() as workdir:
      experiment.train(config, workdir)
      records = [json.loads(l) for l in (pathlib.Path(workdir) / "metrics.jsonl").read_text()
                 .splitlines()]
    runs[name] = [{k: r[k] for k in DETERMINISTIC_KEYS if k in r} for r in records]
    print(name, runs[name][-1])
  out_path = pathlib.Path(args.out)
  out = json.loads(out_path.read_text()) if out_path.exists() else {}
  out.setdefault("recorded_at", "204966c (before the engine refactor)")
  out["xla_flags"] = os.environ["XLA_FLAGS"]
  out.setdefault("by_cpu", {})[cpu_model()] = runs
  out_path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  main()
