r"""Seconds per training iteration of any config: the loop's compiled chunk, timed.

Builds the experiment of `--config` (as `itgan_jax.main` does), compiles one chunk of `--steps`
iterations with the loop's compiler options (`train/chunk.py`), and prints the time of the
initialisation, the compilation and the best of `--repeats` chunk runs, per iteration.

`--num_seeds 1 4 10` times the same config as one program of N seeds (`config.train.num_seeds`,
the table runner's `--vmap_seeds`; train/seed_vmap.py) for each N, the chunks timed in turns so a
load change hits them alike, and prints each N's seconds per iteration of all N seeds and its
throughput against N = 1 measured in the same run (N * t_1 / t_N: > 1 means one N-seed program
trains the seeds faster than N separate runs one after another).

  python benchmarks/chunk_step.py --config=configs/cifar10_gan.py:small --steps 5
  python benchmarks/chunk_step.py --config=configs/mnist_ssl.py --steps 100 --num_seeds 1 2 4
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


def build_timed_chunk(config, num_devices: int, steps: int):
  """(experiment, initial state, compiled chunk of `steps` iterations, init s, compile s)."""
  exp = experiment.build(config)
  if steps > exp.steps_per_epoch:
    raise ValueError(f"--steps {steps} exceeds the config's {exp.steps_per_epoch} steps per epoch")
  mesh = sharding.make_mesh(num_devices)
  start = time.perf_counter()
  state = jax.block_until_ready(chunk_lib.init_state(exp, mesh, config.seed))
  init_s = time.perf_counter() - start
  start = time.perf_counter()
  chunk = chunk_lib.compile_chunk(exp, mesh, state, steps,
                                  compiler_options=chunk_lib.chunk_compiler_options(config.train))
  return exp, state, chunk, init_s, time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="FILE.py[:arg], as itgan_jax.main")
  parser.add_argument("--steps", type=int, default=5, help="iterations per timed chunk")
  parser.add_argument("--repeats", type=int, default=2, help="timed chunks; the best is printed")
  parser.add_argument("--num_devices", type=int, default=1)
  parser.add_argument("--num_seeds", type=int, nargs="+", default=[1],
                      help="seeds trained as one vmapped program, one timing per value")
  parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
  args = parser.parse_args()

  exps, states, chunks, setup = {}, {}, {}, {}
  for n in args.num_seeds:
    config = config_args.load_config_file(args.config)
    config.data.dir = args.data_dir
    config.num_devices = args.num_devices
    config.train.num_seeds = n
    try:
      exps[n], states[n], chunks[n], *setup[n] = build_timed_chunk(config, args.num_devices,
                                                                   args.steps)
    except ValueError as e:
      parser.error(str(e))
  best = {n: float("inf") for n in chunks}
  for r in range(args.repeats):
    for n, chunk in chunks.items():
      start = time.perf_counter()
      states[n], _ = chunk(states[n], r)  # epoch r's first rows
      jax.block_until_ready(states[n])
      best[n] = min(best[n], time.perf_counter() - start)
  print(f"{args.config}: {jax.device_count()} {jax.default_backend()} device(s), using "
        f"{args.num_devices}; batch {exps[args.num_seeds[0]].batch_size}")
  for n, (init_s, compile_s) in setup.items():
    per_iteration = best[n] / args.steps
    line = (f"seeds {n}: init {init_s:.1f} s, compile {compile_s:.1f} s, {per_iteration:.4f} s "
            f"per iteration (best of {args.repeats} chunks of {args.steps})")
    if 1 in best and n != 1:
      line += f", throughput {n * best[1] / best[n]:.2f}x of {n} separate runs"
    print(line)


if __name__ == "__main__":
  main()
