"""Weight-normalised layers and data-dependent init against NumPy re-derivations of improved-gan nn.py."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.nn.weightnorm import (WNConv, WNConvTranspose, WNDense, l2normalize_dense,
                                     older_mnist_dense)


# --- independent NumPy references (float64) -----------------------------------------------------
def _np_wn_kernel(v, g, eps, norm_axes):
  return v * (g / np.sqrt(eps + np.sum(v**2, axis=norm_axes)))


def _np_conv_nhwc(x, w, stride, pads):
  """Direct NumPy cross-correlation, NHWC input x HWIO kernel, explicit ((t, b), (l, r)) pads."""
  x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  kh, kw, _, o = w.shape
  n, h, wd, _ = x.shape
  oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
  out = np.zeros((n, oh, ow, o))
  for i in range(oh):
    for j in range(ow):
      patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
      out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
  return out


def _np_deconv_half(x, w, stride):
  """Transposed conv by scattering: the adjoint of a stride-s cross-correlation with pad k // 2,
  output size s * H (Theano AbstractConv2d_gradInputs, border_mode='half', target s * H)."""
  n, h, wd, _ = x.shape
  kh, kw, _, o = w.shape
  ph, pw = kh // 2, kw // 2
  out = np.zeros((n, stride * h, stride * wd, o))
  for i in range(h):
    for j in range(wd):
      for a in range(kh):
        for b in range(kw):
          r, c = stride * i + a - ph, stride * j + b - pw
          if 0 <= r < stride * h and 0 <= c < stride * wd:
            out[:, r, c, :] += x[:, i, j, :] @ w[a, b]
  return out


def _dense_input(seed):
  return np.random.RandomState(seed).randn(64, 12).astype(np.float32)


def _conv_input(seed):
  return np.random.RandomState(seed).randn(3, 8, 8, 3).astype(np.float32)


def _deconv_input(seed):
  return np.random.RandomState(seed).randn(2, 4, 4, 3).astype(np.float32)


def _out_shape(layer, x):
  return jax.eval_shape(lambda x: layer.init_with_output(jax.random.PRNGKey(0), x)[0], x).shape


def _variables(layer, x, seed=0):
  return layer.init(jax.random.PRNGKey(seed), x)


def _randomise_scale_and_bias(variables, seed):
  """Non-trivial g and b so the forward tests do not rely on the init values."""
  rng = np.random.RandomState(seed)
  out = jax.tree.map(lambda a: a, variables)
  out = {c: dict(v) for c, v in out.items()}
  coll = "params" if "scale" in out["params"] else "frozen"
  k = out[coll]["scale"].shape[0]
  out[coll]["scale"] = jnp.asarray(rng.uniform(0.5, 2.0, k), jnp.float32)
  out["params"]["bias"] = jnp.asarray(rng.randn(k), jnp.float32)
  return out, coll


# --- forward passes -------------------------------------------------------------------------------
def test_dense_forward_matches_numpy(eps=0.0):
  x = _dense_input(0).reshape(64, 3, 4)  # flattened to (64, 12)
  layer = WNDense(6, eps=eps, data_init=False)
  variables, coll = _randomise_scale_and_bias(_variables(layer, x), 1)
  v = np.asarray(variables["params"]["kernel"], np.float64)
  g = np.asarray(variables[coll]["scale"], np.float64)
  b = np.asarray(variables["params"]["bias"], np.float64)
  chex.assert_shape(v, (12, 6))
  ref = x.reshape(64, -1).astype(np.float64) @ _np_wn_kernel(v, g, eps, 0) + b
  out = layer.apply(variables, x)
  chex.assert_shape(out, (64, 6))
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding,stride,pads", [
    (1, 2, ((1, 1), (1, 1))), ("VALID", 1, ((0, 0), (0, 0)))])
def test_conv_forward_matches_numpy(padding, stride, pads):
  x = _conv_input(3)
  layer = WNConv(4, kernel_size=(3, 3), strides=stride, padding=padding, data_init=False)
  variables, coll = _randomise_scale_and_bias(_variables(layer, x), 2)
  v = np.asarray(variables["params"]["kernel"], np.float64)
  chex.assert_shape(v, (3, 3, 3, 4))
  w = _np_wn_kernel(v, np.asarray(variables[coll]["scale"], np.float64), 1e-6, (0, 1, 2))
  ref = _np_conv_nhwc(x.astype(np.float64), w, stride, pads) + np.asarray(
      variables["params"]["bias"])
  out = layer.apply(variables, x)
  chex.assert_shape(out, ref.shape)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_conv_output_shapes_of_the_official_cifar_discriminator():
  x = jnp.zeros((2, 32, 32, 3))
  shape = _out_shape
  assert shape(WNConv(96, kernel_size=3, padding=1), x) == (2, 32, 32, 96)
  assert shape(WNConv(96, kernel_size=3, strides=2, padding=1), x) == (2, 16, 16, 96)
  assert shape(WNConv(192, kernel_size=3, padding=0), jnp.zeros((2, 8, 8, 192))) == (2, 6, 6, 192)
  assert shape(WNConv(192, kernel_size=1, padding=0), jnp.zeros((2, 6, 6, 192))) == (2, 6, 6, 192)


def test_transposed_conv_matches_numpy_scatter(size=4, kernel=5, stride=2):
  x = _deconv_input(4)
  layer = WNConvTranspose(5, kernel_size=(kernel, kernel), strides=stride, data_init=False)
  variables, coll = _randomise_scale_and_bias(_variables(layer, x), 3)
  out = layer.apply(variables, x)
  chex.assert_shape(out, (2, stride * size, stride * size, 5))
  v = np.asarray(variables["params"]["kernel"], np.float64)  # (kh, kw, in=3, out=5)
  chex.assert_shape(v, (kernel, kernel, 3, 5))
  # Official norm axes (0, 2, 3) of W (in, out, kh, kw) = per output channel over (kh, kw, in).
  w = _np_wn_kernel(v, np.asarray(variables[coll]["scale"], np.float64), 1e-6, (0, 1, 2))
  ref = _np_deconv_half(x.astype(np.float64), w, stride) + np.asarray(variables["params"]["bias"])
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_transposed_conv_is_the_adjoint_of_a_half_padded_strided_conv():
  rng = np.random.RandomState(5)
  x = _deconv_input(5)
  layer = WNConvTranspose(5, kernel_size=(5, 5), strides=2, data_init=False, use_bias=False)
  variables = _variables(layer, x)
  out = np.asarray(layer.apply(variables, x), np.float64)
  chex.assert_shape(out, (2, 8, 8, 5))
  v = np.asarray(variables["params"]["kernel"], np.float64)
  w = _np_wn_kernel(v, 1.0, 1e-6, (0, 1, 2))
  y = rng.randn(2, 8, 8, 5)
  conv_y = _np_conv_nhwc(y, np.transpose(w, (0, 1, 3, 2)), 2, ((2, 2), (2, 2)))
  chex.assert_shape(conv_y, (2, 4, 4, 3))
  np.testing.assert_allclose(np.sum(out * y), np.sum(x * conv_y), rtol=1e-5)


def test_transposed_conv_output_is_strides_times_input():
  h = jnp.zeros((2, 4, 4, 512))  # official CIFAR/SVHN G: 4 -> 8 -> 16 -> 32
  for feats, size in ((256, 8), (128, 16), (3, 32)):
    layer = WNConvTranspose(feats, kernel_size=(5, 5), strides=2)
    h = jax.ShapeDtypeStruct(_out_shape(layer, h), jnp.float32)
    assert h.shape == (2, size, size, feats)
  for kernel, strides, size in ((3, 2, 3), (3, 3, 4), (7, 1, 5), ((3, 5), (2, 3), 4)):
    out = _out_shape(WNConvTranspose(2, kernel_size=kernel, strides=strides),
                     jnp.zeros((2, size, 6, 3)))
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    assert out == (2, sh * size, sw * 6, 2)


# --- data-dependent init --------------------------------------------------------------------------
def _check_data_init(layer, x, stat_axes, norm_axes, linear_map):
  init_out, variables = layer.init_with_output(jax.random.PRNGKey(0), x)
  coll = "params" if layer.train_scale else "frozen"
  v = np.asarray(variables["params"]["kernel"], np.float64)
  g = np.asarray(variables[coll]["scale"], np.float64)
  b = np.asarray(variables["params"]["bias"], np.float64)
  # NumPy re-derivation of the official init pass: t = x V / sqrt(eps + sum V^2) (g = 1, b = 0);
  # g = init_stdv / std(t), b = -mean(t) * init_stdv / std(t), per unit.
  t = linear_map(x.astype(np.float64), _np_wn_kernel(v, 1.0, layer.eps, norm_axes))
  m, s = t.mean(stat_axes), t.std(stat_axes)
  np.testing.assert_allclose(g, layer.init_stdv / s, rtol=1e-5)
  np.testing.assert_allclose(b, -m * layer.init_stdv / s, rtol=1e-5, atol=1e-6)
  out = np.asarray(layer.apply(variables, x), np.float64)
  # Pre-activations on the init batch: per-unit mean 0 and std init_stdv.
  np.testing.assert_allclose(out.mean(stat_axes), 0.0, atol=1e-5 * layer.init_stdv)
  np.testing.assert_allclose(out.std(stat_axes), layer.init_stdv, rtol=1e-5)
  # The init pass returns what the initialised layer computes, (t - m) * init_stdv / s.
  np.testing.assert_allclose(init_out, out, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out, (t - m) * layer.init_stdv / s, rtol=1e-4, atol=1e-4)
  return variables


@pytest.mark.parametrize("train_scale,eps,init_stdv,kernel_std", [
    (False, 0.0, 1.0, 0.1),  # older MNIST nn.DenseLayer (hidden)
    (True, 0.0, 1.0, 0.1),   # older MNIST nn.DenseLayer (10-way output)
    (True, 1e-6, 0.1, 0.05)])  # WeightNormLayer output layer (train_g=True, init_stdv=0.1)
def test_dense_data_dependent_init(train_scale, eps, init_stdv, kernel_std):
  x = _dense_input(0) * 3 + 1
  layer = WNDense(6, init_stdv=init_stdv, train_scale=train_scale, kernel_init_std=kernel_std,
                  eps=eps)
  _check_data_init(layer, x, (0,), 0, lambda x, w: x @ w)


def test_conv_data_dependent_init_statistics_over_batch_and_space():
  x = _conv_input(4) * 2 - 0.5
  layer = WNConv(4, kernel_size=(3, 3), strides=2, padding=1)
  _check_data_init(layer, x, (0, 1, 2), (0, 1, 2),
                   lambda x, w: _np_conv_nhwc(x, w, 2, ((1, 1), (1, 1))))


def test_transposed_conv_data_dependent_init_official_generator_output():
  x = np.abs(_deconv_input(6))  # post-ReLU-like
  layer = WNConvTranspose(5, kernel_size=(5, 5), strides=2, init_stdv=0.1, train_scale=True)
  _check_data_init(layer, x, (0, 1, 2), (0, 1, 2), lambda x, w: _np_deconv_half(x, w, 2))


def test_data_init_feeds_the_next_layer_normalised_inputs():
  """Like the official init pass: layer 2 is initialised on layer 1's *initialised* output."""

  class Two(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = WNDense(12, name="l1")(x)
      return WNDense(6, name="l2")(h * 10.0 + 3.0), h

  x = _dense_input(7)
  (out, h), variables = Two().init_with_output(jax.random.PRNGKey(0), x)
  np.testing.assert_allclose(np.std(h, 0), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.mean(out, 0), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.std(out, 0), 1.0, rtol=1e-5)
  out2, _ = Two().apply(variables, x)
  np.testing.assert_allclose(out2, out, rtol=1e-6, atol=1e-6)


def test_without_data_init_scale_is_one_and_bias_zero():
  x = _dense_input(1) * 5 + 2
  variables = _variables(WNDense(6, data_init=False), x)
  np.testing.assert_array_equal(variables["frozen"]["scale"], np.ones(6))
  np.testing.assert_array_equal(variables["params"]["bias"], np.zeros(6))


def test_l2normalize_dense_is_glorot_trainable_scale_no_data_init():
  x = np.random.RandomState(8).randn(64, 500).astype(np.float32) * 3
  layer = l2normalize_dense(784)
  assert (layer.train_scale, layer.data_init, layer.eps) == (True, False, 1e-6)
  variables = _variables(layer, x)
  assert set(variables) == {"params"}
  np.testing.assert_array_equal(variables["params"]["scale"], np.ones(784))
  np.testing.assert_array_equal(variables["params"]["bias"], np.zeros(784))
  v = np.asarray(variables["params"]["kernel"])
  limit = np.sqrt(6.0 / (500 + 784))  # Lasagne GlorotUniform(gain=1)
  assert np.abs(v).max() <= limit and np.abs(v).max() > 0.95 * limit
  np.testing.assert_allclose(np.std(v), limit / np.sqrt(3), rtol=0.02)
  ref = x.astype(np.float64) @ _np_wn_kernel(v.astype(np.float64), 1.0, 1e-6, 0)
  np.testing.assert_allclose(layer.apply(variables, x), ref, rtol=1e-5, atol=1e-5)


def test_older_mnist_dense_kernel_init_std_and_no_epsilon():
  layer = older_mnist_dense(1000)
  assert (layer.kernel_init_std, layer.eps, layer.train_scale) == (0.1, 0.0, False)
  v = _variables(layer, _dense_input(9))
  np.testing.assert_allclose(np.std(v["params"]["kernel"]), 0.1, rtol=0.01)
  assert older_mnist_dense(10, train_scale=True).train_scale


# --- collections and gradients --------------------------------------------------------------------
@pytest.mark.parametrize("cls,train_scale", [
    (WNDense, False), (WNDense, True), (WNConv, False), (WNConvTranspose, True)])
def test_scale_collection_and_gradients(cls, train_scale):
  if cls is WNDense:
    layer, x = WNDense(6, train_scale=train_scale), _dense_input(2)
  elif cls is WNConv:
    layer, x = WNConv(4, kernel_size=3, strides=2, padding=1, train_scale=train_scale), _conv_input(2)
  else:
    layer, x = WNConvTranspose(5, kernel_size=5, train_scale=train_scale), _deconv_input(2)
  variables = _variables(layer, x)
  if train_scale:
    assert set(variables) == {"params"}
    assert set(variables["params"]) == {"kernel", "bias", "scale"}
  else:
    assert set(variables) == {"params", "frozen"}
    assert set(variables["params"]) == {"kernel", "bias"}
    assert set(variables["frozen"]) == {"scale"}
  rest = {k: v for k, v in variables.items() if k != "params"}
  grads = jax.grad(lambda p: jnp.sum(jnp.sin(layer.apply({"params": p, **rest}, x))))(
      variables["params"])
  assert ("scale" in grads) == train_scale
  chex.assert_trees_all_equal_shapes(grads, variables["params"])
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


def test_use_bias_false_has_no_bias():
  x = _dense_input(2)
  out, variables = WNDense(6, use_bias=False).init_with_output(jax.random.PRNGKey(0), x)
  assert "bias" not in variables["params"]
  np.testing.assert_allclose(np.std(out, 0), 1.0, rtol=1e-5)


# --- errors ---------------------------------------------------------------------------------------
def test_clear_errors():
  x4 = jnp.zeros((2, 4, 4, 3))
  with pytest.raises(ValueError, match="odd kernel"):
    WNConvTranspose(3, kernel_size=(4, 4)).init(jax.random.PRNGKey(0), x4)
  with pytest.raises(ValueError, match="padding"):
    WNConv(3, padding="FULL").init(jax.random.PRNGKey(0), x4)
  with pytest.raises(ValueError, match="NHWC"):
    WNConv(3).init(jax.random.PRNGKey(0), jnp.zeros((2, 4, 3)))
  with pytest.raises(ValueError, match="init batch"):
    WNDense(3).init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
  with pytest.raises(ValueError, match="kernel_size"):
    WNConv(3, kernel_size=(3, 3, 3)).init(jax.random.PRNGKey(0), x4)
