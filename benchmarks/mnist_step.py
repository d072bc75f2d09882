r"""Speed of the MNIST semi-supervised training iteration (one D step + one G step, batch 100).

Measures the real training path (device-resident data, index plan, gather, train_step inside one
jitted lax.scan per chunk, exactly what `itgan_jax.main` runs) and prints:
  * ms per iteration and seconds per 600-iteration epoch,
  * the FLOPs per iteration from XLA's cost analysis of the compiled chunk, and from an analytic
    count of the dense layers (forward 2*m*k*n, backward twice that),
  * achieved GFLOP/s and its ratio to this machine's float32 matmul throughput, measured in the
    same run with a jitted square matmul.
Run on a quiet machine: another process on the 2 cores halves every number (the ratio survives).

  python benchmarks/mnist_step.py [--steps 600] [--data_dir ../shared/data]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from itgan_jax import experiment  # noqa: E402
from itgan_jax.data import preprocess  # noqa: E402
from itgan_jax.train import loop, sharding  # noqa: E402
from tests.helpers import load_config  # noqa: E402


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
  """Best-of float32 (n x n) @ (n x n) throughput in GFLOP/s."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best / 1e9


def analytic_flops_per_iteration(batch: int = 100) -> float:
  """Dense-layer FLOPs of one official iteration (forward 2mkn; backward w.r.t. inputs and weights
  4mkn). D: 784-1000-500-250-250-250-10; G: 100-500-500-784.

  D step: G forward (100) + D forward/backward on lab, unl, gen (3 x 100).
  G step: D forward on the real FM batch (100), G forward/backward and D forward/backward w.r.t.
  its input on the generated batch (the weight-gradient half of D's backward is not needed but is
  counted by XLA only if not pruned; we count input-gradients only: 2mkn).
  """
  d_layers = [(784, 1000), (1000, 500), (500, 250), (250, 250), (250, 250), (250, 10)]
  g_layers = [(100, 500), (500, 500), (500, 784)]
  d_fwd = sum(2 * batch * k * n for k, n in d_layers)
  g_fwd = sum(2 * batch * k * n for k, n in g_layers)
  d_step = g_fwd + 3 * (d_fwd + 2 * d_fwd)
  g_step = d_fwd + (g_fwd + 2 * g_fwd) + (d_fwd + d_fwd)
  return float(d_step + g_step)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=600, help="iterations per timed chunk")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
  parser.add_argument("--compare_no_noise", type=int, default=1,
                      help="also time the iteration without D's noise layers (RNG share)")
  args = parser.parse_args()

  print(f"JAX {jax.__version__} on {jax.device_count()} {jax.default_backend()} device(s)")
  peak = matmul_gflops()
  print(f"float32 matmul throughput (2048^3, best of 10): {peak:.1f} GFLOP/s")

  ms, xla_flops = time_iteration(args, {})
  ana_flops = analytic_flops_per_iteration(100)
  print(f"iteration (D step + G step, batch 100, input pipeline included): {ms:.2f} ms = "
        f"{ms * 600 / 1e3:.1f} s per 600-iteration epoch")
  for name, flops in (("XLA cost analysis", xla_flops), ("analytic dense layers", ana_flops)):
    achieved = flops / (ms / 1e3) / 1e9
    print(f"{name}: {flops / 1e9:.3f} GFLOP/iteration -> {achieved:.1f} GFLOP/s = "
          f"{100 * achieved / peak:.0f}% of the measured matmul throughput")
  if args.compare_no_noise:
    ms_quiet, _ = time_iteration(args, {"model.d_input_noise": 0.0, "model.d_hidden_noise": 0.0})
    print(f"same iteration without D's Gaussian noise layers (~1.5M normals per iteration): "
          f"{ms_quiet:.2f} ms -> noise generation is {100 * (1 - ms_quiet / ms):.0f}% of the "
          "iteration")


def time_iteration(args, overrides) -> tuple[float, float]:
  """Best ms per iteration over `repeats` chunks and XLA's FLOPs per iteration."""
  config = load_config("mnist_ssl", None, **{"data.dir": args.data_dir, **overrides})
  exp = experiment.build(config)
  mesh = sharding.make_mesh(1)
  repl = sharding.replicated(mesh)
  state = jax.jit(exp.variant.init, out_shardings=repl)(
      jax.random.PRNGKey(0), preprocess.to_float(exp.x_init, exp.scale))
  arrays = exp.feeder.put(repl)
  run = loop._make_run_chunk(exp.variant, exp.feeder, mesh, args.steps)  # pylint: disable=protected-access
  plan = {k: v[:args.steps] for k, v in exp.epoch_plan(0).items()}
  compiled = run.lower(state, arrays, plan).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops = float(cost.get("flops", float("nan")))  # the scan body (one iteration) counted once
  state, metrics = run(state, arrays, plan)  # warm-up
  jax.block_until_ready(metrics)
  times = []
  for r in range(args.repeats):
    plan = {k: v[:args.steps] for k, v in exp.epoch_plan(r + 1).items()}
    t = time.perf_counter()
    state, metrics = run(state, arrays, plan)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  return 1e3 * min(times) / args.steps, xla_flops


if __name__ == "__main__":
  main()
