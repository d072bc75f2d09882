r"""Step time per phase, FLOPs per step and the expected GPU time of a progressive-growing schedule.

For a config (default: the Theano CIFAR-10 preset `configs/cifar10_progan.py`, 128 maps, batch
16) it builds the experiment as `itgan_jax.main` does and, for every phase of the growth schedule
(4x4 stable, 8x8 fade, ...), compiles one chunk of `--steps` iterations of that phase's program,
counts the FLOPs of the accelerator program (JAX autodiff convolutions, including the gradient
penalty's double backward: `benchmarks/cifar_step.program_flops`) and of the CPU program, and
times it (best of `--repeats`): ms/step and real images/s. Then the whole schedule: each phase's
steps x its FLOPs/step, summed, and the wall time on one GPU at an assumed 30-60 % of float32 peak
(the same assumption as `cifar_step.py`; batch-16 steps are latency-bound on a GPU, so the
low end is the likelier; measure on the device to replace it) and here at the measured speed.

  python benchmarks/progressive_step.py [--config configs/cifar10_progan.py] [--steps 2]
                                        [--repeats 2] [--phases 0 1 2] [--count_only]
Run on a quiet machine; `--synthetic_data` (random CIFAR-sized images) needs no files.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.cifar_step import GPUS, UTILISATION, build_experiment, program_flops  # noqa: E402
from benchmarks.mnist_step import matmul_gflops  # noqa: E402
from itgan_jax.nn import conv as conv_lib  # noqa: E402
from itgan_jax.train import chunk as chunk_lib  # noqa: E402
from itgan_jax.train import sharding  # noqa: E402


def phase_state(exp, mesh, seed: int, phase: int):
  """The state at the first step of `phase` (the phase transforms applied, step set)."""
  state = chunk_lib.init_state(exp, mesh, seed)
  for p in range(1, phase + 1):
    state = exp.variant.enter_phase(state, p)
  state = state.replace(step=jnp.asarray(exp.variant.schedule.phases[phase].start, jnp.int32))
  return jax.device_put(state, sharding.replicated(mesh))


def phase_steps(schedule, total_steps: int) -> list[int]:
  """Steps each phase gets in a run of `total_steps` (the last phase takes the rest)."""
  out = []
  for p in schedule.phases:
    end = total_steps if p.num_steps is None else min(p.start + p.num_steps, total_steps)
    out.append(max(0, end - p.start))
  return out


def measure_phase(exp, mesh, config, phase: int, steps: int, repeats: int, count_only: bool
                  ) -> dict:
  """Compile, count and time one phase's chunk."""
  state = phase_state(exp, mesh, config.seed, phase)
  options = chunk_lib.chunk_compiler_options(config.train)
  start = time.perf_counter()
  chunk = chunk_lib.compile_chunk(exp, mesh, state, steps, phase=phase, compiler_options=options)
  compile_s = time.perf_counter() - start
  with conv_lib.accelerator_gradients():   # counted, never run
    accel = chunk_lib.compile_chunk(exp, mesh, state, 1, phase=phase, compiler_options=options)
  best = math.nan
  for r in range(0 if count_only else repeats):
    start = time.perf_counter()
    state, _ = chunk(state, 0, r * steps)
    jax.block_until_ready(state)
    best = min(best if r else math.inf, (time.perf_counter() - start) / steps)
  return dict(phase=phase, compile_s=compile_s, seconds=best,
              accel_flops=program_flops(accel.compiled.as_text()),
              cpu_flops=program_flops(chunk.compiled.as_text()))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/cifar10_progan.py")
  parser.add_argument("--steps", type=int, default=2, help="iterations per timed chunk")
  parser.add_argument("--repeats", type=int, default=2, help="timed chunks; the best is printed")
  parser.add_argument("--phases", type=int, nargs="*", help="phase indices (default: all)")
  parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
  parser.add_argument("--synthetic_data", action="store_true")
  parser.add_argument("--count_only", action="store_true", help="FLOPs only, no timing")
  args = parser.parse_args()
  mesh = sharding.make_mesh(1)
  config, exp = build_experiment(args.config, args.data_dir, args.synthetic_data)
  schedule, batch = exp.variant.schedule, exp.batch_size
  total_steps = exp.steps_per_epoch * config.train.num_epochs
  counts = phase_steps(schedule, total_steps)
  wanted = range(len(schedule.phases)) if args.phases is None else args.phases
  print(f"backend {jax.default_backend()}, {jax.devices()[0].device_kind}; {args.config}: batch "
        f"{batch}, {total_steps:,} steps = {total_steps * batch / 1e6:.1f}M images, matmul "
        f"precision {exp.matmul_precision}", flush=True)
  rows = []
  with jax.default_matmul_precision(exp.matmul_precision):
    for phase in wanted:
      row = measure_phase(exp, mesh, config, phase, args.steps, args.repeats, args.count_only)
      p = schedule.phases[phase]
      row.update(resolution=p.resolution, fading=p.fading, steps_in_run=counts[phase])
      rows.append(row)
      print(f"  phase {phase} {p.resolution}x{p.resolution} {'fade' if p.fading else 'stable'}: "
            f"{row['seconds'] * 1e3:.0f} ms/step ({batch / row['seconds']:.0f} img/s), accel "
            f"{row['accel_flops'] / 1e9:.2f} GFLOP/step, cpu program "
            f"{row['cpu_flops'] / 1e9:.2f}, compile {row['compile_s']:.0f} s", flush=True)
  matmul = math.nan if args.count_only else matmul_gflops()
  print("\n| phase | resolution | kind | ms/step | images/s | accel GFLOP/step | cpu GFLOP/step "
        "| steps in the run |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['phase']} | {r['resolution']} | {'fade' if r['fading'] else 'stable'} | "
          f"{r['seconds'] * 1e3:.0f} | {batch / r['seconds']:.0f} | {r['accel_flops'] / 1e9:.2f} "
          f"| {r['cpu_flops'] / 1e9:.2f} | {r['steps_in_run']:,} |")
  if len(rows) == len(schedule.phases):
    total = sum(r["accel_flops"] * r["steps_in_run"] for r in rows)
    here = sum(r["seconds"] * r["steps_in_run"] for r in rows)
    estimates = ", ".join(
        f"{name} {total / (peak * UTILISATION[1]) / 3600:.1f}-"
        f"{total / (peak * UTILISATION[0]) / 3600:.1f} h" for name, peak in GPUS.items())
    useful = sum(r["accel_flops"] / r["seconds"] for r in rows) / len(rows) / 1e9
    print(f"\nwhole schedule: {total:.2e} FLOP; {estimates} (at {UTILISATION[0]:.0%}-"
          f"{UTILISATION[1]:.0%} of float32 peak); here {here / 3600:.0f} h at the measured "
          f"speeds ({useful:.1f} useful GFLOP/s on average, matmul {matmul:.1f} GFLOP/s)")


if __name__ == "__main__":
  main()
