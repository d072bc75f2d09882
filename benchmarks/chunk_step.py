r"""Seconds per training iteration of any config: the loop's compiled chunk, timed.

Builds the experiment of `--config` (as `itgan_jax.main` does), compiles one chunk of `--steps`
iterations with the loop's compiler options (`train/chunk.py`), and prints the time of the
initialisation, the compilation and the best of `--repeats` chunk runs, per iteration.

  python benchmarks/chunk_step.py --config=configs/cifar10_gan.py:small --steps 5
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from itgan_jax import config_args  # noqa: E402
from itgan_jax import experiment  # noqa: E402
from itgan_jax.train import chunk as chunk_lib  # noqa: E402
from itgan_jax.train import sharding  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="FILE.py[:arg], as itgan_jax.main")
  parser.add_argument("--steps", type=int, default=5, help="iterations per timed chunk")
  parser.add_argument("--repeats", type=int, default=2, help="timed chunks; the best is printed")
  parser.add_argument("--num_devices", type=int, default=1)
  parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
  args = parser.parse_args()

  config = config_args.load_config_file(args.config)
  config.data.dir = args.data_dir
  config.num_devices = args.num_devices
  exp = experiment.build(config)
  if args.steps > exp.steps_per_epoch:
    parser.error(f"--steps {args.steps} exceeds the config's {exp.steps_per_epoch} steps per epoch")
  mesh = sharding.make_mesh(args.num_devices)
  start = time.perf_counter()
  state = jax.block_until_ready(chunk_lib.init_state(exp, mesh, config.seed))
  init_s = time.perf_counter() - start
  start = time.perf_counter()
  chunk = chunk_lib.compile_chunk(exp, mesh, state, args.steps,
                                  compiler_options=chunk_lib.chunk_compiler_options(config.train))
  compile_s = time.perf_counter() - start
  best = float("inf")
  for r in range(args.repeats):
    start = time.perf_counter()
    state, _ = chunk(state, r)  # epoch r's first rows
    jax.block_until_ready(state)
    best = min(best, time.perf_counter() - start)
  print(f"{args.config}: {jax.device_count()} {jax.default_backend()} device(s), using "
        f"{args.num_devices}; batch {exp.batch_size}")
  print(f"init {init_s:.1f} s, compile {compile_s:.1f} s, {best / args.steps:.3f} s per "
        f"iteration (best of {args.repeats} chunks of {args.steps})")


if __name__ == "__main__":
  main()
