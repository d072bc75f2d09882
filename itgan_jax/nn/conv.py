"""NHWC / HWIO 2-D convolutions whose backward pass stays fast inside XLA:CPU loops.

`conv2d(x, w, strides, padding)` is `lax.conv_general_dilated(x, w, strides, padding,
dimension_numbers=("NHWC", "HWIO", "NHWC"))`. On CPU it is `conv2d_cpu`, the same function with a
hand-written VJP (the autodiff values up to summation order):

  dx = conv(dilate(dy, s), flip(w) with in/out swapped, stride 1, padding (k-1-p_lo, ...))
  dw[a, b, i, o] = sum_{n, u, v} x_pad[n, u*s + a, v*s + b, i] dy[n, u, v, o]
                 (k*k matrix products of a strided view of the padded x with dy)

Why: inside a `lax.scan` (every training chunk) XLA:CPU keeps the kernel gradient that autodiff
emits in the layout `f01b_i01o->01bf`, which no fast convolution library takes, and runs it as a
naive loop, about 60x slower than the same gradient outside a loop; the CIFAR-10 GAN iteration
at `configs/cifar10_gan.py:small` took 69-124 s instead of about 1.3 s (RESULTS.md, CIFAR-10
conv speed). An lhs-dilated convolution (transposed conv) and a kernel reversal next to a
convolution are re-laid out the same way, hence the explicit dilation behind a barrier. Other
backends (cuDNN, TPU) take any layout and keep JAX's autodiff.

Second derivatives (WGAN-GP's gradient penalty differentiates the input gradient again) stay on
this path: the forward and backward rules call `conv2d_cpu` themselves, so every convolution of
a double backward is again one with the loop-proof VJP (a gradient-penalty iteration inside a
scan ran about 20x slower before).

`conv_transpose2d` (the official `Deconv2DLayer`: the adjoint of a stride-s conv with 'half'
padding) is `conv2d` on the input dilated by s with zeros.

Precision: the forward pass reads `jax.default_matmul_precision` (config.precision.matmul) when
it is traced and the hand-written backward pass uses that same precision explicitly, so the
gradient convolutions and products get it even when the VJP is traced outside the context.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]
_FORCE_AUTODIFF = [False]


@contextlib.contextmanager
def accelerator_gradients() -> Iterator[None]:
  """Traces `conv2d` / `conv_transpose2d` with JAX's autodiff on every backend, i.e. the program
  a GPU or TPU runs (benchmarks count its FLOPs on CPU). A trace-time switch: jit inside it."""
  _FORCE_AUTODIFF[0], previous = True, _FORCE_AUTODIFF[0]
  try:
    yield
  finally:
    _FORCE_AUTODIFF[0] = previous


def _cpu_vjp() -> bool:
  return jax.default_backend() == "cpu" and not _FORCE_AUTODIFF[0]


def _conv(x, w, strides=(1, 1), padding=((0, 0), (0, 0)), rhs_dilation=(1, 1), precision=None):
  return jax.lax.conv_general_dilated(x, w, tuple(strides), tuple(padding),
                                      rhs_dilation=tuple(rhs_dilation),
                                      dimension_numbers=_DIMENSIONS, precision=precision)


def _traced_precision() -> str | None:
  """The matmul precision in force now (`jax.default_matmul_precision`; None = XLA default)."""
  return jax.config.jax_default_matmul_precision


def dilate(x: jax.Array, strides: Sequence[int]) -> jax.Array:
  """Inserts `s - 1` zero rows/columns between the pixels of NHWC `x` (size H -> (H-1) s + 1)."""
  sh, sw = strides
  if sh == 1 and sw == 1:
    return x
  n, h, w, c = x.shape
  out = jnp.zeros((n, (h - 1) * sh + 1, (w - 1) * sw + 1, c), x.dtype)
  # Materialised behind a barrier: XLA would otherwise fold the zeros back into the consuming
  # convolution as an lhs dilation and re-lay it out (the slow form this module avoids).
  return jax.lax.optimization_barrier(out.at[:, ::sh, ::sw, :].set(x))


def conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding) -> jax.Array:
  """Cross-correlation of NHWC `x` with HWIO `w`, window `strides`, explicit `padding`
  ((top, bottom), (left, right)); `conv2d_cpu` on CPU, plain autodiff elsewhere."""
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if _cpu_vjp():
    return conv2d_cpu(x, w, strides, padding, _traced_precision())
  return _conv(x, w, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_cpu(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding,
               precision: str | None = None) -> jax.Array:
  """`conv2d` with the loop-proof VJP of the module docstring (any backend; used on CPU);
  `precision` (a `jax.default_matmul_precision` value, None = the context's) for both passes."""
  return _conv(x, w, strides, padding, precision=precision)


def _conv2d_fwd(x, w, strides, padding, precision):
  # `conv2d_cpu` again (not `_conv`): a second differentiation (a gradient penalty) traces this
  # forward rule as ordinary code, and must meet the loop-proof VJP here too.
  return conv2d_cpu(x, w, strides, padding, precision), (x, w)


def _conv2d_bwd(strides, padding, precision, residuals, dy):
  x, w = residuals
  spatial_in, kernel = x.shape[1:3], w.shape[:2]
  spatial_out = dy.shape[1:3]
  # dx: the adjoint, a stride-1 conv of the stride-dilated dy with the flipped, in/out-swapped w.
  w_adjoint = jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2))
  pads_x = tuple((k - 1 - p[0], n - 1 - (m - 1) * s + p[0])
                 for n, m, k, s, p in zip(spatial_in, spatial_out, kernel, strides, padding))
  # Through `conv2d_cpu` itself, so that differentiating this backward pass again (a gradient
  # penalty's double backward) also avoids the slow kernel-gradient layout.
  dx = conv2d_cpu(dilate(dy, strides), w_adjoint, (1, 1), pads_x, precision)
  # dw: one (in, out) matrix product per kernel tap, over a strided view of the padded x.
  pads_w = tuple((p[0], k + (m - 1) * s - n - p[0])
                 for n, m, k, s, p in zip(spatial_in, spatial_out, kernel, strides, padding))
  x_padded = jax.lax.pad(x, jnp.zeros((), x.dtype),
                         ((0, 0, 0),) + tuple((lo, hi, 0) for lo, hi in pads_w) + ((0, 0, 0),))
  (kh, kw), (sh, sw), (ho, wo) = kernel, strides, spatial_out
  rows = []
  for a in range(kh):
    for b in range(kw):
      window = x_padded[:, a:a + (ho - 1) * sh + 1:sh, b:b + (wo - 1) * sw + 1:sw, :]
      rows.append(jnp.tensordot(window, dy, axes=((0, 1, 2), (0, 1, 2)),  # (in, out)
                                precision=precision))
  dw = jnp.stack(rows).reshape(w.shape)
  return dx, dw


conv2d_cpu.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv_transpose2d(x: jax.Array, w: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """The adjoint of a stride-s cross-correlation padded by k // 2 (odd k), applied with kernel
  `flip(w)`: output size s * H (official `Deconv2DLayer`, Theano 'half' mode). Equals
  `lax.conv_general_dilated(x, flip(w), 1, pads, lhs_dilation=s)` with pads
  (k - 1 - k // 2, k - 1 - k // 2 + s - 1)."""
  kh, kw = w.shape[:2]
  pads = tuple((k - 1 - k // 2, k - 1 - k // 2 + s - 1) for k, s in zip((kh, kw), strides))
  if _cpu_vjp():
    return conv2d_cpu(dilate(x, strides), jnp.flip(w, (0, 1)), (1, 1), pads,
                      _traced_precision())
  return jax.lax.conv_general_dilated(x, jnp.flip(w, (0, 1)), (1, 1), pads,
                                      lhs_dilation=tuple(strides), dimension_numbers=_DIMENSIONS)
