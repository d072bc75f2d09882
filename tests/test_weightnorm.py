"""Weight-normalised layers and data-dependent init against NumPy re-derivations of nn.py."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.nn.weightnorm import WNConv, WNConvTranspose, WNDense


def _np_wn_dense(x, v, g, b, eps):
  w = v * (g / np.sqrt(eps + np.sum(v**2, axis=0)))[None, :]
  return x @ w + b


@pytest.mark.parametrize("train_scale,eps,init_stdv", [(False, 0.0, 1.0), (True, 1e-6, 0.1)])
def test_dense_data_dependent_init_statistics_and_forward(train_scale, eps, init_stdv):
  x = np.random.RandomState(0).randn(500, 30).astype(np.float32) * 3 + 1
  layer = WNDense(20, init_stdv=init_stdv, train_scale=train_scale, kernel_init_std=0.1, eps=eps)
  init_out, variables = layer.init_with_output(jax.random.PRNGKey(0), x)
  coll = "params" if train_scale else "frozen"
  assert "scale" in variables[coll]
  assert "scale" not in variables.get("params" if not train_scale else "frozen", {})
  v = np.asarray(variables["params"]["kernel"], np.float64)
  g = np.asarray(variables[coll]["scale"], np.float64)
  b = np.asarray(variables["params"]["bias"], np.float64)
  # NumPy re-derivation of the official init: t = x V/||V||, g = s0/std(t), b = -mean(t) s0/std(t).
  t = x.astype(np.float64) @ (v / np.sqrt(eps + np.sum(v**2, axis=0)))
  np.testing.assert_allclose(g, init_stdv / t.std(0), rtol=1e-4)
  np.testing.assert_allclose(b, -t.mean(0) * init_stdv / t.std(0), rtol=1e-4, atol=1e-6)
  out = np.asarray(layer.apply(variables, x), np.float64)
  np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(out.std(0), init_stdv, rtol=1e-4)
  np.testing.assert_allclose(out, _np_wn_dense(x, v, g, b, eps), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(init_out, out, rtol=1e-4, atol=1e-4)  # init pass returns the same
  chex.assert_shape(out, (500, 20))


def test_dense_without_data_init_is_plain_reparametrisation():
  x = np.random.RandomState(1).randn(7, 5).astype(np.float32)
  layer = WNDense(3, data_init=False, train_scale=True, eps=1e-6,
                  kernel_init=nn.initializers.glorot_uniform())
  variables = layer.init(jax.random.PRNGKey(0), x)
  np.testing.assert_array_equal(variables["params"]["scale"], np.ones(3))
  np.testing.assert_array_equal(variables["params"]["bias"], np.zeros(3))
  v = np.asarray(variables["params"]["kernel"])
  np.testing.assert_allclose(layer.apply(variables, x), _np_wn_dense(x, v, 1.0, 0.0, 1e-6),
                             rtol=1e-5, atol=1e-6)


def test_frozen_scale_gets_no_gradient_and_trainable_scale_does():
  x = np.random.RandomState(2).randn(16, 4).astype(np.float32)
  for train_scale in (False, True):
    layer = WNDense(3, train_scale=train_scale)
    variables = layer.init(jax.random.PRNGKey(0), x)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    grads = jax.grad(lambda p: jnp.sum(layer.apply({"params": p, **rest}, x) ** 2))(params)
    assert ("scale" in grads) == train_scale


def _np_conv_nhwc(x, w, stride, pad):
  """Direct NumPy cross-correlation, NHWC x HWIO."""
  x = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
  kh, kw, _, o = w.shape
  n, h, wd, _ = x.shape
  oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
  out = np.zeros((n, oh, ow, o))
  for i in range(oh):
    for j in range(ow):
      patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
      out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
  return out


def test_conv_forward_and_init_statistics():
  x = np.random.RandomState(3).randn(8, 9, 9, 3).astype(np.float32)
  layer = WNConv(4, kernel_size=(3, 3), strides=2, padding=1)
  variables = layer.init(jax.random.PRNGKey(0), x)
  out = np.asarray(layer.apply(variables, x), np.float64)
  chex.assert_shape(out, (8, 5, 5, 4))
  np.testing.assert_allclose(out.mean((0, 1, 2)), 0, atol=1e-4)
  np.testing.assert_allclose(out.std((0, 1, 2)), 1, rtol=1e-4)
  v = np.asarray(variables["params"]["kernel"], np.float64)
  g = np.asarray(variables["frozen"]["scale"], np.float64)
  b = np.asarray(variables["params"]["bias"], np.float64)
  w = v * (g / np.sqrt(1e-6 + np.sum(v**2, axis=(0, 1, 2))))
  ref = _np_conv_nhwc(x.astype(np.float64), w, 2, ((1, 1), (1, 1))) + b
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_transposed_conv_doubles_size_and_is_the_adjoint_of_a_half_padded_conv():
  """Deconv2DLayer ('half', stride 2) is the gradient of a stride-2 conv with padding k//2."""
  rng = np.random.RandomState(4)
  x = rng.randn(2, 4, 4, 3).astype(np.float32)
  layer = WNConvTranspose(5, kernel_size=(5, 5), strides=2, data_init=False)
  variables = layer.init(jax.random.PRNGKey(0), x)
  out = layer.apply(variables, x)
  chex.assert_shape(out, (2, 8, 8, 5))
  v = np.asarray(variables["params"]["kernel"], np.float64)  # (kh, kw, in=3, out=5)
  w = v / np.sqrt(1e-6 + np.sum(v**2, axis=(0, 1, 2)))
  # Adjoint check: <deconv(x), y> == <x, conv_s2(y)> with the conv using the same kernel swapped.
  y = rng.randn(2, 8, 8, 5)
  conv_y = _np_conv_nhwc(y, np.transpose(w, (0, 1, 3, 2)), 2, ((2, 2), (2, 2)))[:, :4, :4]
  np.testing.assert_allclose(np.sum(np.asarray(out, np.float64) * y), np.sum(x * conv_y),
                             rtol=1e-4)
