r"""Speed and FLOPs of the CIFAR-10 semi-supervised iteration (official conv D + G, batch 100).

For each `--configs` entry (default: feature matching `configs/cifar10_ssl.py` and minibatch
discrimination `configs/cifar10_ssl.py:md`, full width) it builds the experiment as
`itgan_jax.main` does, compiles one chunk of `--steps` iterations (the loop's program) and prints:
  * ms per iteration (best of `--repeats` chunks) and the hours an epoch of 500 takes here;
  * FLOPs per iteration counted on the compiled programs' convolutions and dots (2 x multiply-adds
    whose operands are not padding or dilation holes):
      - `cpu`: the program this machine runs (our loop-proof conv VJP, `itgan_jax/nn/conv.py`,
        materialises zero-dilated gradients, so it executes more multiply-adds),
      - `accel`: the program a GPU/TPU runs (JAX's autodiff convolutions, compiled here only to be
        counted); it is the work any faithful step does;
    and XLA's own cost analysis of the CPU program (elementwise work included; like our count
    it sees the scan body, one iteration, once);
  * achieved GFLOP/s and its share of this machine's float32 matmul throughput, measured in the
    same run with a square matmul (`benchmarks/mnist_step.py`);
  * the wall time of the config's whole schedule (CIFAR: 1200 epochs x 500 = 600k iterations)
    on one GPU, estimated from the `accel` FLOPs: float32 peak (the faithful `highest` precision) of an H100 SXM
    (67 TFLOP/s) and an A100 (19.5 TFLOP/s) at 30-60 % utilisation (an assumption: batch-100 3x3
    convolutions at 32x32 do not fill a GPU; measure on the device to replace it).
The chunks and the matmul are timed in turns; run on a quiet machine (another process on the 2
cores slows everything and makes the ratios noisy).

  python benchmarks/cifar_step.py [--configs configs/cifar10_ssl.py configs/cifar10_ssl.py:md]
                                  [--steps 2] [--repeats 2] [--synthetic_data] [--count_only]
`--synthetic_data` trains on random images of the dataset's official sizes (e.g. SVHN, whose files
are not here: the FLOPs and the speed do not depend on the pixels); `--count_only` skips timing.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import re
import sys
import time

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.mnist_step import dot_flops, dots_in_hlo, hlo_shapes, matmul_gflops  # noqa: E402
from itgan_jax import config_args  # noqa: E402
from itgan_jax import experiment  # noqa: E402
from itgan_jax.data.base import ArrayDataset  # noqa: E402
from itgan_jax.nn import conv as conv_lib  # noqa: E402
from itgan_jax.train import chunk as chunk_lib  # noqa: E402
from itgan_jax.train import sharding  # noqa: E402

SYNTHETIC_SHAPES = {"mnist": ((28, 28, 1), 60000, 10000), "cifar10": ((32, 32, 3), 50000, 10000),
                    "svhn": ((32, 32, 3), 73257, 26032)}
GPUS = {"H100 SXM fp32": 67e12, "A100 fp32": 19.5e12}
UTILISATION = (0.3, 0.6)


def valid_taps(out: int, kernel: int, stride: int, pad_lo: int, lhs_dilate: int, rhs_dilate: int,
               size_in: int) -> int:
  """(output position, kernel tap) pairs of one spatial dimension that read a real input element
  (not padding, not a hole of the lhs dilation)."""
  extent = (size_in - 1) * lhs_dilate + 1
  count = 0
  for o in range(out):
    for k in range(kernel):
      c = o * stride + k * rhs_dilate - pad_lo
      count += 0 <= c < extent and c % lhs_dilate == 0
  return count


def conv_flops_in_hlo(hlo_text: str) -> float:
  """2 x real multiply-adds summed over every `convolution` op of an HLO module text."""
  shapes = hlo_shapes(hlo_text)
  total = 0.0
  for line in hlo_text.splitlines():
    if " convolution(" not in line:
      continue
    out_shape = tuple(int(d) for d in re.search(r"= \w+\[([\d,]*)\]", line).group(1).split(","))
    lhs, rhs = re.search(r"convolution\((?:\S+ )?%(\S+?), (?:\S+ )?%(\S+?)\)", line).groups()
    lhs_shape, rhs_shape = shapes[lhs], shapes[rhs]
    labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", line).groups()
    window = re.search(r"window=\{([^}]*)\}", line).group(1)

    def field(name, n, default):
      m = re.search(name + r"=([\dx_]+)", window)
      if not m:
        return [default] * n
      return [tuple(int(v) for v in p.split("_")) if "_" in p else int(p)
              for p in m.group(1).split("x")]
    spatial = [ch for ch in labels[0] if ch.isdigit()]
    n = len(spatial)
    size, stride = field("size", n, 1), field("stride", n, 1)
    pad, lhs_d, rhs_d = field("pad", n, (0, 0)), field("lhs_dilate", n, 1), field("rhs_dilate", n, 1)
    groups = int(re.search(r"feature_group_count=(\d+)", line).group(1)) if (
        "feature_group_count" in line) else 1
    taps = 1
    for i, ch in enumerate(spatial):
      taps *= valid_taps(out_shape[labels[2].index(ch)], size[i], stride[i], pad[i][0], lhs_d[i],
                         rhs_d[i], lhs_shape[labels[0].index(ch)])
    batch = out_shape[labels[2].index("b")]
    features_out = out_shape[labels[2].index("f")]
    features_in = lhs_shape[labels[0].index("f")] // groups
    assert rhs_shape[labels[1].index("o")] == features_out, line
    total += 2.0 * batch * features_out * features_in * taps
  return total


def program_flops(hlo_text: str) -> float:
  return conv_flops_in_hlo(hlo_text) + float(sum(dot_flops(d) for d in dots_in_hlo(hlo_text)))


def synthetic_dataset(name: str) -> ArrayDataset:
  """Random uint8 images and balanced labels with the official split sizes of `name`."""
  shape, n_train, n_test = SYNTHETIC_SHAPES[name]
  rng = np.random.default_rng(0)
  return ArrayDataset(name=name, train_x=rng.integers(0, 256, (n_train,) + shape, np.uint8),
                      train_y=(np.arange(n_train) % 10).astype(np.int32),
                      test_x=rng.integers(0, 256, (n_test,) + shape, np.uint8),
                      test_y=(np.arange(n_test) % 10).astype(np.int32), num_classes=10)


def build_experiment(spec: str, data_dir: str, synthetic: bool):
  """(config, experiment) of a config spec, on synthetic data of the official sizes if asked."""
  config = config_args.load_config_file(spec)
  config.data.dir = data_dir
  config.num_devices = 1
  dataset = synthetic_dataset(config.data.name) if synthetic else None
  return config, experiment.build(config, dataset)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", nargs="+",
                      default=["configs/cifar10_ssl.py", "configs/cifar10_ssl.py:md"])
  parser.add_argument("--steps", type=int, default=2, help="iterations per timed chunk")
  parser.add_argument("--repeats", type=int, default=2, help="timed chunks; the best is printed")
  parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
  parser.add_argument("--synthetic_data", action="store_true",
                      help="random images of the dataset's official sizes (no files needed)")
  parser.add_argument("--count_only", action="store_true", help="FLOPs only, no timing")
  args = parser.parse_args()
  mesh = sharding.make_mesh(1)
  print(f"backend {jax.default_backend()}, {jax.devices()[0].device_kind}", flush=True)
  rows = []
  for spec in args.configs:
    config, exp = build_experiment(spec, args.data_dir, args.synthetic_data)
    with jax.default_matmul_precision(exp.matmul_precision):  # as the loop traces
      rows.append(_measure(spec, config, exp, mesh, args))
  _print_table(rows)


def _measure(spec, config, exp, mesh, args) -> tuple:
  """Compiles, counts and times one config; prints its block and returns its table row."""
  state = chunk_lib.init_state(exp, mesh, config.seed)
  options = chunk_lib.chunk_compiler_options(config.train)
  start = time.perf_counter()
  chunk = chunk_lib.compile_chunk(exp, mesh, state, args.steps, compiler_options=options)
  compile_s = time.perf_counter() - start
  with conv_lib.accelerator_gradients():  # counted, never run
    accel = chunk_lib.compile_chunk(exp, mesh, state, 1, compiler_options=options)
  cpu_flops = program_flops(chunk.compiled.as_text())  # the scan body appears once
  accel_flops = program_flops(accel.compiled.as_text())
  xla_flops = chunk.compiled.cost_analysis()
  xla_flops = (xla_flops[0] if isinstance(xla_flops, list) else xla_flops).get("flops", math.nan)
  # (the scan body, i.e. one iteration, is counted once whatever --steps is)
  best, matmul = math.nan, math.nan
  for r in range(0 if args.count_only else args.repeats):
    start = time.perf_counter()
    state, _ = chunk(state, 0, r * args.steps)
    jax.block_until_ready(state)
    best = min(best if r else math.inf, (time.perf_counter() - start) / args.steps)
    matmul = max(matmul if r else 0.0, matmul_gflops())
  print(f"{spec}: batch {exp.batch_size}, {exp.steps_per_epoch} iterations/epoch, matmul "
        f"precision {exp.matmul_precision}, compile {compile_s:.0f} s", flush=True)
  print(f"  {best * 1e3:.0f} ms/iteration ({best * exp.steps_per_epoch / 3600:.2f} h/epoch here)")
  print(f"  FLOPs/iteration: accel {accel_flops / 1e12:.3f} T, cpu program "
        f"{cpu_flops / 1e12:.3f} T (XLA cost analysis {xla_flops / 1e12:.3f} T)")
  print(f"  achieved {accel_flops / best / 1e9:.1f} GFLOP/s of useful work "
        f"({cpu_flops / best / 1e9:.1f} executed); matmul {matmul:.1f} GFLOP/s in this run: "
        f"{accel_flops / best / 1e9 / matmul:.1%} useful, {cpu_flops / best / 1e9 / matmul:.1%} "
        "executed")
  iterations = exp.steps_per_epoch * config.train.num_epochs
  total = accel_flops * iterations
  estimates = ", ".join(
      f"{name} {total / (peak * UTILISATION[1]) / 3600:.1f}-"
      f"{total / (peak * UTILISATION[0]) / 3600:.1f} h" for name, peak in GPUS.items())
  print(f"  {config.train.num_epochs} epochs x {exp.steps_per_epoch} = {total:.2e} FLOP: {estimates} "
        f"(at {UTILISATION[0]:.0%}-{UTILISATION[1]:.0%} of float32 peak)", flush=True)
  return spec, best, cpu_flops, accel_flops, xla_flops, matmul, compile_s


def _print_table(rows) -> None:
  print("\n| config | ms/iter | accel TFLOP/iter | cpu TFLOP/iter | useful GFLOP/s | matmul GFLOP/s "
        "| share |")
  print("|---|---|---|---|---|---|---|")
  for spec, best, cpu_flops, accel_flops, _, matmul, _ in rows:
    print(f"| {spec} | {best * 1e3:.0f} | {accel_flops / 1e12:.3f} | {cpu_flops / 1e12:.3f} | "
          f"{accel_flops / best / 1e9:.1f} | {matmul:.1f} | {accel_flops / best / 1e9 / matmul:.1%} |")


if __name__ == "__main__":
  main()
