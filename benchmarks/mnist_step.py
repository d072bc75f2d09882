r"""Speed of the MNIST semi-supervised training iteration (one D step + one G step, batch 100).

Measures the real training path (device-resident data, index plan, gather, train_step inside one
jitted lax.scan per chunk, exactly what `itgan_jax.main` runs) and prints:
  * ms per iteration and seconds per 600-iteration epoch,
  * the matrix-product FLOPs per iteration (analytic count of the products a faithful step must
    do, checked against the dots of the compiled chunk) and XLA's cost-analysis FLOPs (which also
    count elementwise and integer RNG work, so they grow with cheaper-but-longer RNG code),
  * achieved GFLOP/s and its ratio to this machine's float32 matmul throughput, measured in the
    same run with a jitted square matmul (the headline ratio uses the matrix-product FLOPs),
  * the bound the model's own shapes set: the dots of the compiled chunk (same shapes and
    transposes: M = 100 or 300 rows, at most 1000 wide) timed alone in one jitted call, their
    GFLOP/s as a share of the square matmul's, and the iteration's share of that bound (the rest
    is non-dot work: noise RNG, weight norm, Adam/EMA, batch norm, loop copies),
  * the ceiling of any faithful step on this machine: its dots, its Adam/EMA parameter updates
    and its Gaussian-noise normals, each timed alone; their sum bounds the iteration from below,
    so FLOPs / that sum bounds the achievable share of the matmul throughput from above,
  * optionally the same step with the noise drawn by jax.random.normal (identical numbers) and
    without D's noise layers, for the RNG's share.
The variants, the dots and the matmul are timed in turns (best of `--repeats` each), so a load change hits
them alike; still, run on a quiet machine: another process on the 2 cores slows every number and
makes the ratios noisy.

  python benchmarks/mnist_step.py [--steps 600] [--repeats 3] [--compare_jax_random_noise 1]
                                  [--compare_copy_analysis 1]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import re
import sys
import time
from unittest import mock

import jax
import jax.numpy as jnp

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from itgan_jax import experiment  # noqa: E402
from itgan_jax.config_args import load_config_file  # noqa: E402
from itgan_jax.nn import fast_random  # noqa: E402
from itgan_jax.train import chunk, players, sharding  # noqa: E402


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
  """Matrix-product FLOPs of one official iteration (2mkn per product), the work any faithful
  implementation must do. D: 784-1000-500-250-250-250-10; G: 100-500-500-784.

  D step: G forward (batch); D forward on lab+unl+gen (3 batch), weight gradients of all six
  layers and input gradients of layers 2..6 (the images need none).
  G step: D forward on the real FM batch up to the FM layer (layers 1..5); G forward, weight
  gradients of its three layers and input gradients of layers 2..3; D forward on the generated
  batch up to the FM layer and input gradients of layers 1..5 (D's weights are constants there;
  its logits are unused).
  Equals the sum over the dot ops of the compiled chunk (`dot_flops_in_hlo`).
  """
  d_layers = [(784, 1000), (1000, 500), (500, 250), (250, 250), (250, 250), (250, 10)]
  g_layers = [(100, 500), (500, 500), (500, 784)]

  def fwd(layers, rows):
    return sum(2 * rows * k * n for k, n in layers)

  d_step = fwd(g_layers, batch) + fwd(d_layers, 3 * batch) * 2 + fwd(d_layers[1:], 3 * batch)
  g_step = (fwd(d_layers[:5], batch) + fwd(g_layers, batch) * 2 + fwd(g_layers[1:], batch)
            + fwd(d_layers[:5], batch) * 2)
  return float(d_step + g_step)


def hlo_shapes(hlo_text: str) -> dict[str, tuple[int, ...]]:
  """`{instruction name: array shape}` of every array-valued instruction of an HLO module text."""
  shapes = {}
  for line in hlo_text.splitlines():
    m = re.match(r"\s*(?:ROOT )?%(\S+) = \w+\[([\d,]*)\]", line)
    if m:
      shapes[m.group(1)] = tuple(int(d) for d in m.group(2).split(",") if d)
  return shapes


def dots_in_hlo(hlo_text: str) -> list[tuple]:
  """Every dot op of an HLO module text as (lhs shape, rhs shape, dimension numbers) (the scan
  body, i.e. one iteration, appears once), for `dot_flops_in_hlo` and `time_dots`."""
  shapes = hlo_shapes(hlo_text)

  def dims(line, key):
    m = re.search(key + r"=\{([\d,]*)\}", line)
    return tuple(int(i) for i in m.group(1).split(",") if i) if m else ()

  dots = []
  for line in hlo_text.splitlines():
    if " dot(" not in line:
      continue
    lhs, rhs = re.search(r"dot\(%(\S+?), %(\S+?)\)", line).groups()
    dnums = ((dims(line, "lhs_contracting_dims"), dims(line, "rhs_contracting_dims")),
             (dims(line, "lhs_batch_dims"), dims(line, "rhs_batch_dims")))
    dots.append((shapes[lhs], shapes[rhs], dnums))
  return dots


def dot_flops(dot: tuple) -> float:
  """2 * prod(output) * prod(contracted dims) of one `dots_in_hlo` entry."""
  lhs, rhs, ((lc, rc), (lb, rb)) = dot
  out = ([lhs[i] for i in lb] + [d for i, d in enumerate(lhs) if i not in lc + lb]
         + [d for i, d in enumerate(rhs) if i not in rc + rb])
  return 2.0 * math.prod(out) * math.prod(lhs[i] for i in lc)


def dot_flops_in_hlo(hlo_text: str) -> float:
  """2 * prod(output) * prod(contracted dims) summed over every dot of an HLO module text (the
  scan body, i.e. one iteration, appears once)."""
  return float(sum(dot_flops(d) for d in dots_in_hlo(hlo_text)))


class time_dots:  # pylint: disable=invalid-name
  """The iteration's own matrix products alone: every dot of the compiled chunk (same shapes and
  transposes) on random float32 operands, all in one jitted call (each dot runs as its own XLA
  dot, as in the step). Their time is the bound this model's products set on XLA:CPU: the step
  cannot be faster than its dots, whatever happens to the elementwise work around them."""

  def __init__(self, dots):
    keys = jax.random.split(jax.random.PRNGKey(0), 2 * len(dots))
    self.operands = [(jax.random.normal(keys[2 * i], lhs, jnp.float32),
                      jax.random.normal(keys[2 * i + 1], rhs, jnp.float32))
                     for i, (lhs, rhs, _) in enumerate(dots)]
    self.flops = float(sum(dot_flops(d) for d in dots))
    self.f = jax.jit(lambda ops: [jax.lax.dot_general(a, b, d[2])
                                  for (a, b), d in zip(ops, dots)])
    jax.block_until_ready(self.f(self.operands))

  def __call__(self, repeats: int) -> float:
    """Best-of `repeats` ms of all the dots of one iteration."""
    best = float("inf")
    for _ in range(repeats):
      t = time.perf_counter()
      jax.block_until_ready(self.f(self.operands))
      best = min(best, time.perf_counter() - t)
    return 1e3 * best


class time_updates:  # pylint: disable=invalid-name
  """The iteration's parameter updates alone: D's and G's optimizer (official Adam) and D's EMA
  over all their parameters, `steps` updates in one jitted lax.scan. This memory-bound work is
  done once per iteration by any faithful step (2.2M parameters, each with Adam's two moments and,
  for D, the EMA), whatever the fusion around it; the gradient is a cheap function of the
  parameters (one read) so nothing is constant-folded."""

  def __init__(self, variant, state, steps: int):
    def one(player, tx):
      grads = jax.tree.map(lambda p: 1e-3 * p, player.params)
      # as the step: Adam, then the EMA of the pre-update parameters (if the player has one)
      return players.step(player, tx, grads, 1e-4, variant.ema_rate)

    def body(carry, _):
      d, g = carry
      return (one(d, variant.d_tx), one(g, variant.g_tx)), None

    self.steps = steps
    self.size = sum(x.size for x in jax.tree.leaves((state.d.params, state.g.params)))
    self.carry = jax.tree.map(jnp.array, (state.d, state.g))
    self.f = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps)[0], donate_argnums=0)
    self.carry = jax.block_until_ready(self.f(self.carry))

  def __call__(self) -> float:
    """ms per iteration's updates."""
    t = time.perf_counter()
    self.carry = jax.block_until_ready(self.f(self.carry))
    return 1e3 * (time.perf_counter() - t) / self.steps


class time_noise:  # pylint: disable=invalid-name
  """D's Gaussian noise of one iteration alone: every normal the step draws (D step: input and
  hidden noise on the 300 stacked rows; G step: input and hidden noise up to the feature-matching
  layer on the real and the generated 100 rows), drawn with `fast_random.normal` and added to an
  activation-sized array, `steps` iterations in one jitted lax.scan."""

  def __init__(self, discriminator, input_width: int, batch: int, steps: int):
    widths = (input_width,) + tuple(discriminator.hidden)
    sigmas = (discriminator.input_noise,) + (discriminator.hidden_noise,) * len(discriminator.hidden)
    fm_widths = len(widths) - 1  # the noise after the FM layer feeds only the unused logits
    self.shapes = ([(3 * batch, w, s) for w, s in zip(widths, sigmas)]
                   + [(batch, w, s) for w, s in zip(widths[:fm_widths], sigmas[:fm_widths])] * 2)
    self.count = sum(r * w for r, w, _ in self.shapes)

    def body(carry, key):
      keys = jax.random.split(key, len(self.shapes))
      return [x + s * fast_random.normal(k, x.shape) for x, k, (_, _, s)
              in zip(carry, keys, self.shapes)], None

    self.steps = steps
    self.keys = jax.random.split(jax.random.PRNGKey(0), steps)
    self.carry = [jnp.zeros((r, w), jnp.float32) for r, w, _ in self.shapes]
    self.f = jax.jit(lambda c, k: jax.lax.scan(body, c, k)[0], donate_argnums=0)
    self.carry = jax.block_until_ready(self.f(self.carry, self.keys))

  def __call__(self) -> float:
    """ms per iteration's noise."""
    t = time.perf_counter()
    self.carry = jax.block_until_ready(self.f(self.carry, self.keys))
    return 1e3 * (time.perf_counter() - t) / self.steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=600, help="iterations per timed chunk")
  parser.add_argument("--repeats", type=int, default=3,
                      help="rounds; each round times every variant, the dots and the matmul")
  parser.add_argument("--matmul_repeats", type=int, default=10,
                      help="2048^3 matmuls per round (the peak is the best of all rounds)")
  parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
  parser.add_argument("--compare_no_noise", type=int, default=1,
                      help="also time the iteration without D's noise layers (RNG share)")
  parser.add_argument("--compare_copy_analysis", type=int, default=0,
                      help="also time the iteration compiled without copy insertion's region "
                           "analysis (train.xla_cpu_region_copy_analysis=False)")
  parser.add_argument("--compare_jax_random_noise", type=int, default=0,
                      help="also time the iteration with the noise drawn by jax.random.normal "
                           "(the same numbers, JAX's rolled CPU threefry loop)")
  args = parser.parse_args()

  print(f"JAX {jax.__version__} on {jax.device_count()} {jax.default_backend()} device(s)")

  # Variants are compiled first and then timed in turns (round robin), so that a load change on
  # the machine hits all of them alike and their ratios stay meaningful.
  variants = {"step": prepare(args, {})}
  if args.compare_jax_random_noise:
    with mock.patch.object(fast_random, "normal", _jax_random_normal):
      variants["jax.random.normal noise"] = prepare(args, {})
  if args.compare_copy_analysis:
    variants["no copy analysis"] = prepare(args, {"train.xla_cpu_region_copy_analysis": False})
  if args.compare_no_noise:
    variants["no noise"] = prepare(args, {"model.d_input_noise": 0.0,
                                          "model.d_hidden_noise": 0.0})
  dots = time_dots(dots_in_hlo(variants["step"].compiled.as_text()))
  main_variant = variants["step"]
  updates = time_updates(main_variant.exp.variant, main_variant.state, args.steps)
  noise = time_noise(main_variant.exp.variant.discriminator,
                     math.prod(main_variant.exp.init_batch.shape[1:]), 100, args.steps)
  best = {name: float("inf") for name in variants}
  peak, dots_ms, updates_ms, noise_ms = 0.0, float("inf"), float("inf"), float("inf")
  for r in range(args.repeats):
    peak = max(peak, matmul_gflops(repeats=args.matmul_repeats))
    dots_ms = min(dots_ms, dots(max(1, args.steps // 20)))
    updates_ms = min(updates_ms, updates())
    noise_ms = min(noise_ms, noise())
    for name, variant in variants.items():
      best[name] = min(best[name], variant.time_chunk(r + 1))
  peak = max(peak, matmul_gflops(repeats=args.matmul_repeats))
  print(f"float32 matmul throughput (2048^3, best of {args.matmul_repeats * (args.repeats + 1)} "
        f"interleaved with the chunks): {peak:.1f} GFLOP/s")
  ms = best["step"]
  ana_flops = analytic_flops_per_iteration(100)
  print(f"iteration (D step + G step, batch 100, input pipeline included): {ms:.2f} ms = "
        f"{ms * 600 / 1e3:.1f} s per 600-iteration epoch")
  print(f"matrix products: {ana_flops / 1e9:.4f} GFLOP/iteration analytic, "
        f"{main_variant.hlo_dot_flops / 1e9:.4f} in the compiled dots")
  for name, flops in (("matrix-product FLOPs", ana_flops),
                      ("XLA cost analysis (all ops, incl. elementwise and integer RNG)",
                       main_variant.xla_flops)):
    achieved = flops / (ms / 1e3) / 1e9
    print(f"{name}: {flops / 1e9:.3f} GFLOP/iteration -> {achieved:.1f} GFLOP/s = "
          f"{100 * achieved / peak:.0f}% of the measured matmul throughput")
  dots_gflops = dots.flops / (dots_ms / 1e3) / 1e9
  print(f"the iteration's own matrix products timed alone ({len(dots.operands)} dots of the compiled "
        f"chunk, same shapes and transposes, one jitted call): {dots_ms:.2f} ms = "
        f"{dots_gflops:.1f} GFLOP/s = {100 * dots_gflops / peak:.0f}% of the 2048^3 matmul "
        f"(the bound these shapes set); the iteration reaches {100 * dots_ms / ms:.0f}% of that "
        f"bound, {ms - dots_ms:.2f} ms/iteration go to non-dot work")
  floor_ms = dots_ms + updates_ms + noise_ms
  floor_gflops = ana_flops / (floor_ms / 1e3) / 1e9
  print(f"work every faithful iteration does, each part timed alone: dots {dots_ms:.2f} ms + "
        f"Adam/EMA updates of the {updates.size / 1e6:.2f}M parameters {updates_ms:.2f} ms + "
        f"{noise.count / 1e6:.2f}M noise normals {noise_ms:.2f} ms = {floor_ms:.2f} ms -> at best "
        f"{floor_gflops:.1f} GFLOP/s = {100 * floor_gflops / peak:.0f}% of the matmul throughput "
        f"(the ceiling on this machine; the iteration reaches {100 * floor_ms / ms:.0f}% of it)")
  if "jax.random.normal noise" in best:
    ms_jax = best["jax.random.normal noise"]
    print(f"same iteration with the noise from jax.random.normal (identical numbers): "
          f"{ms_jax:.2f} ms -> this step takes {ms / ms_jax:.2f}x that")
  if "no copy analysis" in best:
    print(f"same iteration compiled without copy insertion's region analysis: "
          f"{best['no copy analysis']:.2f} ms -> the analysis saves "
          f"{100 * (1 - ms / best['no copy analysis']):.0f}%")
  if "no noise" in best:
    ms_quiet = best["no noise"]
    print(f"same iteration without D's Gaussian noise layers (~1.5M normals per iteration): "
          f"{ms_quiet:.2f} ms -> noise generation is {100 * (1 - ms_quiet / ms):.0f}% of the "
          "iteration")


def _jax_random_normal(key, shape, dtype=jnp.float32):
  return jax.random.normal(key, shape, dtype)


class prepare:  # pylint: disable=invalid-name
  """Compiles the real training chunk of `args.steps` iterations for a config with `overrides`."""

  def __init__(self, args, overrides):
    config = load_config_file(str(REPO / "configs" / "mnist_ssl.py"),
                              **{"data.dir": args.data_dir, **overrides})
    self.exp = experiment.build(config)
    self.steps = args.steps
    mesh = sharding.make_mesh(1)
    self.state = chunk.init_state(self.exp, mesh, seed=0)
    self.chunk = chunk.compile_chunk(self.exp, mesh, self.state, self.steps,
                                     compiler_options=chunk.chunk_compiler_options(config.train))
    self.compiled = self.chunk.compiled
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.xla_flops = float(cost.get("flops", float("nan")))  # the scan body counted once
    self.hlo_dot_flops = dot_flops_in_hlo(self.compiled.as_text())
    self.state, metrics = self.chunk(self.state, epoch=0)  # warm-up
    jax.block_until_ready(metrics)

  def time_chunk(self, epoch: int) -> float:
    """ms per iteration of one chunk (the host's plan transfer included)."""
    t = time.perf_counter()
    self.state, metrics = self.chunk(self.state, epoch=epoch)
    jax.block_until_ready(metrics)
    return 1e3 * (time.perf_counter() - t) / self.steps


if __name__ == "__main__":
  main()
