"""nn/conv.py: the CPU convolutions' hand-written VJP equals JAX's autodiff, and stays canonical
inside a lax.scan (the 60x slow path of XLA:CPU it exists to avoid)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.nn import conv as conv_lib

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _f64(rng, shape):
  return jnp.asarray(rng.normal(size=shape), jnp.float64)


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("size,kernel,stride,pad", [
    ((8, 9), 3, 1, ((1, 1), (1, 1))),   # official 3x3 'half'
    ((8, 8), 3, 2, ((1, 1), (1, 1))),   # official stride-2 3x3
    ((9, 7), 3, 2, ((1, 1), (1, 1))),   # odd sizes: the last row/column is not reached
    ((8, 8), 3, 1, ((0, 0), (0, 0))),   # 3x3 'valid'
    ((6, 6), 1, 1, ((0, 0), (0, 0))),   # NIN 1x1
    ((10, 10), 5, 2, ((2, 1), (2, 1))),  # asymmetric padding
    ((10, 10), 3, 2, ((0, 0), (0, 0))),  # the kernel gradient needs a negative high padding
    ((7, 7), 3, 1, ((3, 3), (3, 3))),   # MNIST's first conv (pad 3)
])
def test_conv2d_cpu_values_and_gradients_equal_autodiff(size, kernel, stride, pad):
  rng = np.random.default_rng(0)
  x, w = _f64(rng, (3, *size, 4)), _f64(rng, (kernel, kernel, 4, 5))
  ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (stride, stride), pad,
                                                  dimension_numbers=_DIMENSIONS)
  ours = lambda x, w: conv_lib.conv2d_cpu(x, w, (stride, stride), pad)
  y, vjp_ref = jax.vjp(ref, x, w)
  y_ours, vjp_ours = jax.vjp(ours, x, w)
  np.testing.assert_allclose(y_ours, y, rtol=1e-12, atol=1e-12)
  dy = _f64(rng, y.shape)
  for got, want in zip(vjp_ours(dy), vjp_ref(dy)):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("size,kernel,stride", [(4, 5, 2), (8, 5, 2), (5, 3, 2), (4, 3, 1)])
def test_conv_transpose2d_equals_the_lhs_dilated_convolution(size, kernel, stride):
  rng = np.random.default_rng(1)
  x, w = _f64(rng, (2, size, size, 6)), _f64(rng, (kernel, kernel, 6, 3))
  pads = ((kernel - 1 - kernel // 2, kernel - 1 - kernel // 2 + stride - 1),) * 2
  ref = lambda x, w: jax.lax.conv_general_dilated(x, jnp.flip(w, (0, 1)), (1, 1), pads,
                                                  lhs_dilation=(stride, stride),
                                                  dimension_numbers=_DIMENSIONS)
  ours = lambda x, w: conv_lib.conv_transpose2d(x, w, (stride, stride))
  y, vjp_ref = jax.vjp(ref, x, w)
  y_ours, vjp_ours = jax.vjp(ours, x, w)
  assert y.shape == (2, size * stride, size * stride, 3)
  np.testing.assert_allclose(y_ours, y, rtol=1e-12, atol=1e-12)
  dy = _f64(rng, y.shape)
  for got, want in zip(vjp_ours(dy), vjp_ref(dy)):
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


def test_dilate_inserts_zeros_between_pixels():
  x = jnp.arange(2 * 2 * 3 * 1, dtype=jnp.float32).reshape(2, 2, 3, 1)
  d = np.asarray(conv_lib.dilate(x, (2, 2)))
  assert d.shape == (2, 3, 5, 1)
  np.testing.assert_array_equal(d[:, ::2, ::2], x)
  assert np.count_nonzero(d[:, 1::2]) == 0 and np.count_nonzero(d[:, :, 1::2]) == 0


def _convolution_layouts(hlo_text: str) -> list[str]:
  return re.findall(r" convolution\(.*?dim_labels=([^,\s]+)", hlo_text)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU layout behaviour")
def test_gradients_inside_scan_stay_canonical_on_cpu():
  """Autodiff's kernel gradient inside lax.scan compiles to `f01b_i01o->01bf` on XLA:CPU (a naive
  loop, ~60x slower); conv2d and conv_transpose2d keep every convolution in NHWC/HWIO form."""
  x = jnp.ones((4, 8, 8, 3), jnp.float32)
  w = jnp.ones((3, 3, 3, 5), jnp.float32)
  wt = jnp.ones((5, 5, 5, 2), jnp.float32)

  def loss(params, ours):
    w, wt = params
    if ours:
      y = conv_lib.conv_transpose2d(conv_lib.conv2d(x, w, (2, 2), ((1, 1), (1, 1))), wt, (2, 2))
    else:
      h = jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)),
                                       dimension_numbers=_DIMENSIONS)
      y = jax.lax.conv_general_dilated(h, jnp.flip(wt, (0, 1)), (1, 1), ((2, 3), (2, 3)),
                                       lhs_dilation=(2, 2), dimension_numbers=_DIMENSIONS)
    return jnp.sum(y ** 2)

  def compiled_layouts(ours):
    def run(params):
      def body(p, _):
        g = jax.grad(loss)(p, ours)
        return jax.tree.map(lambda a, b: a - 1e-3 * b, p, g), None
      return jax.lax.scan(body, params, None, length=2)[0]
    return _convolution_layouts(jax.jit(run).lower((w, wt)).compile().as_text())

  assert any(l != "b01f_01io->b01f" for l in compiled_layouts(False))  # the problem exists
  ours = compiled_layouts(True)
  assert ours and all(l == "b01f_01io->b01f" for l in ours), ours


def _penalty(conv, w, x):
  """A gradient penalty: || d/dx sum lrelu(conv(x, w)) ||^2 per sample (needs a double
  backward to differentiate in w)."""
  g = jax.grad(lambda x: jnp.sum(jax.nn.leaky_relu(conv(x, w), 0.2) ** 2))(x)
  return jnp.sum(jnp.mean(jnp.sum(g ** 2, axis=(1, 2, 3))))


def test_double_backward_equals_autodiff():
  rng = np.random.default_rng(1)
  x, w = _f64(rng, (2, 7, 7, 3)), _f64(rng, (3, 3, 3, 4))
  pad = ((1, 1), (1, 1))
  ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), pad, dimension_numbers=_DIMENSIONS)
  ours = lambda x, w: conv_lib.conv2d_cpu(x, w, (2, 2), pad)
  np.testing.assert_allclose(jax.grad(_penalty, 1)(ours, w, x), jax.grad(_penalty, 1)(ref, w, x),
                             rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU layout behaviour")
def test_gradient_penalty_double_backward_inside_scan_stays_canonical_on_cpu():
  """WGAN-GP differentiates the input gradient again: the backward pass's own convolutions go
  through the loop-proof VJP too (an autodiff conv there compiles to `f01b_i01o->01bf`)."""
  x = jnp.ones((4, 8, 8, 3), jnp.float32)
  w = jnp.ones((3, 3, 3, 3), jnp.float32)
  conv = lambda x, w: conv_lib.conv2d(x, w, (1, 1), ((1, 1), (1, 1)))  # noqa: E731

  def run(w):
    def body(w, _):
      return w - 1e-3 * jax.grad(_penalty, 1)(conv, w, x), None
    return jax.lax.scan(body, w, None, length=2)[0]
  layouts = _convolution_layouts(jax.jit(run).lower(w).compile().as_text())
  assert layouts and all(l == "b01f_01io->b01f" for l in layouts), layouts
