r"""RP-GAN iteration time as K grows, per K-evaluation strategy, and vs K separate 1-D steps.

For each K in `--ks` and each strategy in `--strategies` ('vmap', 'map', 'shard';
`model.k_strategy`, docs/rpgan.md) it builds the experiment of `--config` (default
`configs/cifar10_rpgan.py:small`, on synthetic CIFAR-10-sized data) with
`model.num_projections = K`, compiles one chunk of `--steps` iterations (the loop's program:
G step + D step of all K discriminators) and prints:
  * ms per iteration (best of `--repeats` chunks);
  * the ratio to K separate single-discriminator steps measured in the same run:
    t(K) / (K * t(1)), where t(1) is the iteration with ONE projection and one D (the same
    program at K = 1, vmap): < 1 means evaluating the K discriminators together beats running
    K one-discriminator iterations (the official loop runs its D_k one after another);
  * FLOPs per iteration counted on the compiled programs (`benchmarks/cifar_step.py`: 2 x the
    real multiply-adds of every convolution and dot): `accel` = the program a GPU/TPU runs
    (JAX's autodiff convolutions, grouped under vmap), `cpu` = the program run here, and
    XLA's cost analysis of the CPU program. Every strategy does the same arithmetic, and a
    count of HLO text sees a loop body once (the chunk's scan: one iteration, as wanted; but
    also `map`'s loop over groups of discriminators; and an SPMD program is one device's share),
    so the FLOPs of each K are counted on its 'vmap' program on one device;
  * the fastest strategy per K (the `AUTO_STRATEGY` entry of this backend in
    `itgan_jax/models/rpgan.py` records it).
Strategies are timed in turns within one process; run on a quiet machine.

  python benchmarks/rpgan_step.py [--ks 1 12 24 48] [--strategies vmap map shard]
      [--config configs/cifar10_rpgan.py:small] [--steps 2] [--repeats 2] [--map_batch_size 4]
      [--host_devices N] [--count_only] [--no_accel_flops]
`--host_devices N` gives XLA:CPU N devices (set before JAX starts): 'shard' splits K over them
(each must divide K), the batch stays on one device per discriminator group.
Smoke (seconds): --config configs/cifar10_rpgan.py:tiny --ks 1 2 --steps 1 --repeats 1.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time


def _parse(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/cifar10_rpgan.py:small")
  parser.add_argument("--ks", type=int, nargs="+", default=[1, 12, 24, 48])
  parser.add_argument("--strategies", nargs="+", default=["vmap", "map", "shard"],
                      choices=["vmap", "map", "shard"])
  parser.add_argument("--steps", type=int, default=2, help="iterations per timed chunk")
  parser.add_argument("--repeats", type=int, default=2, help="timed chunks; the best is printed")
  parser.add_argument("--map_batch_size", type=int, default=4, help="model.k_map_batch_size")
  parser.add_argument("--host_devices", type=int, default=1,
                      help="XLA:CPU devices ('shard' splits K over them)")
  parser.add_argument("--count_only", action="store_true", help="FLOPs only, no timing")
  parser.add_argument("--no_accel_flops", action="store_true",
                      help="skip compiling the accelerator program (its FLOP count)")
  args = parser.parse_args(argv)
  if min(args.ks) < 1:
    raise SystemExit(f"--ks must be >= 1, got {args.ks}")
  return args


def main(argv=None) -> list[dict]:
  args = _parse(argv)
  if args.host_devices > 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.host_devices}")
  import jax  # pylint: disable=import-outside-toplevel

  repo = pathlib.Path(__file__).resolve().parents[1]
  sys.path.insert(0, str(repo))
  from benchmarks import cifar_step  # pylint: disable=import-outside-toplevel
  from itgan_jax import config_args, experiment  # pylint: disable=import-outside-toplevel
  from itgan_jax.nn import conv as conv_lib  # pylint: disable=import-outside-toplevel
  from itgan_jax.train import chunk as chunk_lib  # pylint: disable=import-outside-toplevel
  from itgan_jax.train import sharding  # pylint: disable=import-outside-toplevel

  spec = args.config if pathlib.Path(args.config.partition(":")[0]).exists() else str(
      repo / args.config)
  base = config_args.load_config_file(spec)
  dataset = cifar_step.synthetic_dataset(base.data.name)
  print(f"backend {jax.default_backend()}, {jax.devices()[0].device_kind} x "
        f"{len(jax.devices())}; {args.config}: batch {base.train.batch_size}, "
        f"G {base.model.g_features}, df {base.model.d_features}", flush=True)

  def build(k: int, strategy: str):
    config = config_args.load_config_file(spec, **{
        "model.num_projections": k, "model.k_strategy": strategy,
        "model.k_map_batch_size": args.map_batch_size,
        "num_devices": args.host_devices if strategy == "shard" else 1})
    return config, experiment.build(config, dataset)

  counts = {}   # K -> (accel, cpu, xla) FLOPs of the vmap program

  def count(k, exp, mesh, state, options, chunk=None):
    if k not in counts:
      if chunk is None:
        chunk = chunk_lib.compile_chunk(exp, mesh, state, 1, compiler_options=options)
      cpu = cifar_step.program_flops(chunk.compiled.as_text())
      accel = math.nan
      if not args.no_accel_flops:
        with conv_lib.accelerator_gradients():  # counted, never run
          accel = cifar_step.program_flops(chunk_lib.compile_chunk(
              exp, mesh, state, 1, compiler_options=options).compiled.as_text())
      xla = chunk.compiled.cost_analysis()
      xla = (xla[0] if isinstance(xla, list) else xla).get("flops", math.nan)
      counts[k] = (accel, cpu, xla)
    return counts[k]

  def measure(k: int, strategy: str) -> dict:
    config, exp = build(k, strategy)
    mesh = sharding.make_mesh(config.num_devices)
    with jax.default_matmul_precision(exp.matmul_precision):
      state = chunk_lib.init_state(exp, mesh, config.seed)
      options = chunk_lib.chunk_compiler_options(config.train)
      start = time.perf_counter()
      chunk = chunk_lib.compile_chunk(exp, mesh, state, args.steps, compiler_options=options)
      compile_s = time.perf_counter() - start
      if strategy == "vmap":
        accel, cpu, xla = count(k, exp, mesh, state, options, chunk)
      elif k not in counts:
        _, vexp = build(k, "vmap")
        vmesh = sharding.make_mesh(1)
        vstate = chunk_lib.init_state(vexp, vmesh, config.seed)
        accel, cpu, xla = count(k, vexp, vmesh, vstate, options)
      else:
        accel, cpu, xla = counts[k]
      best = math.nan
      for r in range(0 if args.count_only else args.repeats):
        start = time.perf_counter()
        state, _ = chunk(state, 0, r * args.steps)
        jax.block_until_ready(state)
        best = min(best if r else math.inf, (time.perf_counter() - start) / args.steps)
    row = dict(k=k, strategy=strategy, ms=best * 1e3, accel=accel, cpu=cpu, xla=xla,
               compile_s=compile_s)
    print(f"K={k:3d} {strategy:5s}: {row['ms']:8.1f} ms/iteration, FLOPs/iteration accel "
          f"{accel / 1e9:.2f} G, cpu {cpu / 1e9:.2f} G (XLA {xla / 1e9:.2f} G), compile "
          f"{compile_s:.0f} s", flush=True)
    return row

  single = measure(1, "vmap")   # the one-projection, one-D iteration (K separate steps: K x this)
  rows = [measure(k, s) for k in args.ks for s in args.strategies
          if not (s == "shard" and k % args.host_devices)]
  _print_table(rows, single)
  return rows


def _print_table(rows: list[dict], single: dict) -> None:
  print("\n| K | strategy | ms/iter | / (K x 1-D iter) | accel GFLOP/iter | cpu GFLOP/iter | "
        "XLA GFLOP/iter |")
  print("|---|---|---|---|---|---|---|")
  print(f"| 1-D iteration | vmap | {single['ms']:.1f} | 1 | {single['accel'] / 1e9:.2f} | "
        f"{single['cpu'] / 1e9:.2f} | {single['xla'] / 1e9:.2f} |")
  for r in rows:
    ratio = r["ms"] / (r["k"] * single["ms"])
    print(f"| {r['k']} | {r['strategy']} | {r['ms']:.1f} | {ratio:.2f} | {r['accel'] / 1e9:.2f} | "
          f"{r['cpu'] / 1e9:.2f} | {r['xla'] / 1e9:.2f} |")
  fastest = {}
  for r in rows:
    if not math.isnan(r["ms"]) and (r["k"] not in fastest or r["ms"] < fastest[r["k"]]["ms"]):
      fastest[r["k"]] = r
  if fastest:
    print("\nfastest: " + ", ".join(f"K={k}: {r['strategy']}" for k, r in sorted(fastest.items())))


if __name__ == "__main__":
  main()
