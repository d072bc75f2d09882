r"""Convolution gradients inside a `lax.scan` on XLA:CPU: JAX's autodiff vs `nn.conv`.

Every training chunk is a `lax.scan`, and inside it XLA:CPU compiles autodiff's kernel gradient in
a layout that runs as a naive loop (see `itgan_jax/nn/conv.py`). For the layer shapes of the
CIFAR-10 conv family (`configs/cifar10_gan.py`, full and `:small` widths, batch 100, real and
generated images in one D pass = 200 rows), this times one scanned step (forward and both
gradients) of a plain `lax.conv_general_dilated` and of `nn.conv.conv2d` / `conv_transpose2d`,
and prints ms per step, GFLOP/s of the step's three convolutions and the ratio, all in one run.

  python benchmarks/conv_grad_in_scan.py [--repeats 3] [--only small]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from itgan_jax.nn import conv as conv_lib

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")

# (label, rows, input side, in, out, kernel, stride, transposed)
LAYERS = {
    "small": [
        ("D 3x3 32->32 @32", 200, 32, 32, 32, 3, 1, False),
        ("D 3x3 32->32 s2 @32", 200, 32, 32, 32, 3, 2, False),
        ("D 3x3 64->64 @16", 200, 16, 64, 64, 3, 1, False),
        ("G 5x5 128->64 deconv @4", 100, 4, 128, 64, 5, 2, True),
        ("G 5x5 64->32 deconv @8", 100, 8, 64, 32, 5, 2, True),
    ],
    "full": [
        ("D 3x3 96->96 @32", 200, 32, 96, 96, 3, 1, False),
        ("D 3x3 192->192 @16", 200, 16, 192, 192, 3, 1, False),
        ("G 5x5 512->256 deconv @4", 100, 4, 512, 256, 5, 2, True),
    ],
}


def _autodiff_layer(stride, transposed, kernel):
  if transposed:
    pads = ((kernel - 1 - kernel // 2, kernel - 1 - kernel // 2 + stride - 1),) * 2
    return lambda x, w: jax.lax.conv_general_dilated(
        x, jnp.flip(w, (0, 1)), (1, 1), pads, lhs_dilation=(stride, stride),
        dimension_numbers=_DIMENSIONS)
  pads = ((kernel // 2, kernel // 2),) * 2
  return lambda x, w: jax.lax.conv_general_dilated(x, w, (stride, stride), pads,
                                                   dimension_numbers=_DIMENSIONS)


def _ours_layer(stride, transposed, kernel):
  if transposed:
    return lambda x, w: conv_lib.conv_transpose2d(x, w, (stride, stride))
  pads = ((kernel // 2, kernel // 2),) * 2
  return lambda x, w: conv_lib.conv2d(x, w, (stride, stride), pads)


def _scanned_step(layer):
  """One scan iteration: forward, loss, gradients of input and kernel, a kernel update."""
  def run(x, w):
    def body(w, _):
      (_, (dx, dw)) = jax.value_and_grad(lambda x, w: jnp.sum(layer(x, w) ** 2),
                                         argnums=(0, 1))(x, w)
      return w - 1e-6 * dw, jnp.sum(dx)
    return jax.lax.scan(body, w, None, length=1)
  return jax.jit(run)


def _time(fn, args, repeats):
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3, help="timed calls; the best is printed")
  parser.add_argument("--only", choices=sorted(LAYERS), default=None)
  args = parser.parse_args()
  print(f"JAX {jax.__version__}, backend {jax.default_backend()}; one scanned step = forward + "
        "input and kernel gradients; best of", args.repeats)
  print(f"{'layer':28s} {'autodiff ms':>12s} {'nn.conv ms':>11s} {'ratio':>7s} "
        f"{'autodiff GF/s':>14s} {'nn.conv GF/s':>13s}")
  key = jax.random.PRNGKey(0)
  for group, layers in LAYERS.items():
    if args.only and group != args.only:
      continue
    for label, rows, side, cin, cout, kernel, stride, transposed in layers:
      x = jax.random.normal(key, (rows, side, side, cin))
      w = 0.05 * jax.random.normal(key, (kernel, kernel, cin, cout))
      out_side = side * stride if transposed else side // stride
      taps = kernel * kernel * (1 if not transposed else 1 / (stride * stride))
      flops = 3 * 2 * rows * out_side * out_side * cout * cin * taps  # forward, dx, dw
      t_ref = _time(_scanned_step(_autodiff_layer(stride, transposed, kernel)), (x, w),
                    args.repeats)
      t_ours = _time(_scanned_step(_ours_layer(stride, transposed, kernel)), (x, w),
                     args.repeats)
      print(f"{label:28s} {1e3 * t_ref:12.1f} {1e3 * t_ours:11.1f} {t_ref / t_ours:6.1f}x "
            f"{flops / t_ref / 1e9:14.1f} {flops / t_ours / 1e9:13.1f}", flush=True)


if __name__ == "__main__":
  main()
