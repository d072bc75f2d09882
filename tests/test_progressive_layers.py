"""ProGAN layers (itgan_jax/nn/progressive.py) against the NumPy re-derivation in
tests/reference/progan_numpy.py (official formulas, NCHW, float64)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.nn import progressive as pg
from tests.reference import progan_numpy as ref

_key = lambda i: jax.random.key(i, impl="unsafe_rbg")
TOL = dict(rtol=1e-5, atol=1e-5)


def _randn(rng, *shape):
  return jnp.asarray(rng.randn(*shape), jnp.float32)


@pytest.mark.parametrize("gain", [math.sqrt(2.0), 1.0, math.sqrt(2.0) / 4])
def test_equalized_dense_scales_the_weight_at_run_time_and_not_the_bias(gain):
  rng = np.random.RandomState(0)
  x = _randn(rng, 5, 64)
  layer = pg.EqualizedDense(48, gain=gain)
  params = layer.init(_key(0), x)["params"]
  # Stored weights N(0, 1) whatever the gain; bias zero.
  assert abs(float(jnp.std(params["kernel"])) - 1.0) < 0.05
  np.testing.assert_array_equal(params["bias"], 0.0)
  params = {"kernel": params["kernel"], "bias": _randn(rng, 48)}
  out = layer.apply({"params": params}, x)
  chex.assert_shape(out, (5, 48))
  p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
  np.testing.assert_allclose(out, ref.dense(np.asarray(x, np.float64), p64["kernel"], p64["bias"],
                                            gain), **TOL)
  # Run time scale: a change dW of the stored weight moves the output by x dW gain / sqrt(fan_in).
  dw = _randn(rng, 64, 48)
  out2 = layer.apply({"params": {**params, "kernel": params["kernel"] + dw}}, x)
  np.testing.assert_allclose(out2 - out, np.asarray(x, np.float64) @ np.asarray(dw, np.float64)
                             * gain / 8.0, rtol=1e-4, atol=1e-4)
  # The bias is added unscaled.
  out3 = layer.apply({"params": {**params, "bias": params["bias"] + 1.0}}, x)
  np.testing.assert_allclose(out3 - out, 1.0, rtol=1e-5, atol=1e-5)


def test_dense_without_wscale_is_he_initialised_and_used_as_is():
  rng = np.random.RandomState(1)
  x = _randn(rng, 3, 100)
  layer = pg.EqualizedDense(200, gain=math.sqrt(2.0), use_wscale=False)
  params = layer.init(_key(1), x)["params"]
  assert abs(float(jnp.std(params["kernel"])) - math.sqrt(2.0 / 100)) < 0.005
  out = layer.apply({"params": params}, x)
  np.testing.assert_allclose(out, np.asarray(x, np.float64) @ np.asarray(params["kernel"],
                                                                           np.float64), **TOL)


@pytest.mark.parametrize("kernel,padding,pad", [(3, "SAME", 1), (1, "SAME", 0), (4, "VALID", 0)])
def test_equalized_conv_matches_numpy(kernel, padding, pad):
  rng = np.random.RandomState(2)
  x = _randn(rng, 2, 6, 6, 5)
  layer = pg.EqualizedConv(7, kernel, padding=padding)
  params = layer.init(_key(2), x)["params"]
  chex.assert_shape(params["kernel"], (kernel, kernel, 5, 7))
  np.testing.assert_array_equal(params["bias"], 0.0)
  params = {"kernel": params["kernel"], "bias": _randn(rng, 7)}
  out = layer.apply({"params": params}, x)
  side = 6 + 2 * pad - kernel + 1
  chex.assert_shape(out, (2, side, side, 7))
  expect = ref.conv(ref.nchw(x), np.asarray(params["kernel"], np.float64),
                    np.asarray(params["bias"], np.float64), math.sqrt(2.0), pad)
  np.testing.assert_allclose(out, ref.nhwc(expect), **TOL)
  # fan_in = kh * kw * C_in: doubling the stored kernel doubles (output - bias).
  out2 = layer.apply({"params": {**params, "kernel": 2 * params["kernel"]}}, x)
  np.testing.assert_allclose(out2 - params["bias"], 2 * (out - params["bias"]), rtol=1e-4,
                             atol=1e-4)


def test_conv_without_wscale():
  rng = np.random.RandomState(3)
  x = _randn(rng, 2, 5, 5, 16)
  layer = pg.EqualizedConv(32, 3, use_wscale=False)
  params = layer.init(_key(3), x)["params"]
  assert abs(float(jnp.std(params["kernel"])) - math.sqrt(2.0 / (9 * 16))) < 0.005
  out = layer.apply({"params": params}, x)
  expect = ref.conv(ref.nchw(x), np.asarray(params["kernel"], np.float64), None, 1.0, 1,
                    wscale=False)
  np.testing.assert_allclose(out, ref.nhwc(expect), **TOL)


def test_to_rgb_gain_1_linear_and_from_rgb_gain_sqrt2_lrelu():
  rng = np.random.RandomState(4)
  x = _randn(rng, 2, 4, 4, 6)
  to_rgb = pg.ToRGB(3)
  p = to_rgb.init(_key(4), x)["params"]["conv"]
  p = {"kernel": p["kernel"], "bias": _randn(rng, 3)}
  out = to_rgb.apply({"params": {"conv": p}}, x)
  expect = ref.conv(ref.nchw(x), np.asarray(p["kernel"], np.float64),
                    np.asarray(p["bias"], np.float64), 1.0, 0)
  np.testing.assert_allclose(out, ref.nhwc(expect), **TOL)
  assert float(jnp.min(out)) < 0  # linear
  from_rgb = pg.FromRGB(8)
  img = _randn(rng, 2, 4, 4, 3)
  q = from_rgb.init(_key(5), img)["params"]["conv"]
  q = {"kernel": q["kernel"], "bias": _randn(rng, 8)}
  out = from_rgb.apply({"params": {"conv": q}}, img)
  expect = ref.lrelu(ref.conv(ref.nchw(img), np.asarray(q["kernel"], np.float64),
                              np.asarray(q["bias"], np.float64), math.sqrt(2.0), 0))
  np.testing.assert_allclose(out, ref.nhwc(expect), **TOL)


def test_pixel_norm_is_the_mean_of_squares_not_the_variance():
  rng = np.random.RandomState(5)
  x = rng.randn(3, 4, 4, 8) + 2.0  # mean-shifted: centring would change the result
  out = pg.pixel_norm(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(out, ref.nhwc(ref.pixel_norm(ref.nchw(x))), **TOL)
  np.testing.assert_allclose(np.mean(np.square(out), axis=-1), 1.0, rtol=1e-5)
  variance_version = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-8)
  assert np.max(np.abs(np.asarray(out) - variance_version)) > 0.5
  # Latent vectors: over the last axis of (N, D).
  z = rng.randn(4, 16)
  np.testing.assert_allclose(pg.pixel_norm(jnp.asarray(z, jnp.float32)),
                             z / np.sqrt(np.mean(z ** 2, axis=1, keepdims=True) + 1e-8), **TOL)


def test_minibatch_stddev_whole_batch_and_strided_groups():
  rng = np.random.RandomState(6)
  # Different scales per sample so that groupings give different statistics.
  x = rng.randn(8, 4, 4, 3) * np.arange(1, 9)[:, None, None, None]
  xj = jnp.asarray(x, jnp.float32)
  whole = pg.minibatch_stddev(xj, None)
  chex.assert_shape(whole, (8, 4, 4, 4))
  np.testing.assert_allclose(whole, ref.nhwc(ref.minibatch_stddev(ref.nchw(x), None)), **TOL)
  np.testing.assert_array_equal(whole[..., :3], xj)
  assert np.unique(np.asarray(whole[..., 3])).size == 1  # one scalar for the whole batch
  grouped = pg.minibatch_stddev(xj, 4)
  np.testing.assert_allclose(grouped, ref.nhwc(ref.minibatch_stddev(ref.nchw(x), 4)), **TOL)
  # Strided (TF reshape [G, N/G, ...]): samples 0, 2, 4, 6 share a value; 0 and 1 do not.
  stat = np.asarray(grouped[:, 0, 0, 3])
  np.testing.assert_allclose(stat[0::2], stat[0], rtol=1e-6)
  np.testing.assert_allclose(stat[1::2], stat[1], rtol=1e-6)
  assert abs(stat[0] - stat[1]) > 1e-3
  consecutive = np.sqrt(x[:4].var(axis=0) + 1e-8).mean()
  assert abs(stat[0] - consecutive) > 1e-3
  assert abs(stat[0] - float(whole[0, 0, 0, 3])) > 1e-3
  # TF caps the group at the batch size: a group of 16 on 8 samples is the whole batch.
  np.testing.assert_allclose(pg.minibatch_stddev(xj, 16), whole, rtol=1e-6)


def test_minibatch_stddev_rejects_a_batch_that_is_not_a_multiple_of_the_group():
  x = jnp.zeros((6, 4, 4, 2))
  with pytest.raises(ValueError, match="not a multiple of the group size 4"):
    pg.minibatch_stddev(x, 4)
  with pytest.raises(ValueError, match="group_size"):
    pg.minibatch_stddev(x, 0)


def test_upsample_and_downsample_match_numpy():
  rng = np.random.RandomState(7)
  x = rng.randn(2, 4, 6, 3)
  up = pg.upsample_nearest(jnp.asarray(x, jnp.float32))
  chex.assert_shape(up, (2, 8, 12, 3))
  np.testing.assert_allclose(up, ref.nhwc(ref.upsample(ref.nchw(x))), **TOL)
  down = pg.downsample_avg(jnp.asarray(x, jnp.float32))
  chex.assert_shape(down, (2, 2, 3, 3))
  np.testing.assert_allclose(down, ref.nhwc(ref.downsample(ref.nchw(x))), **TOL)
  np.testing.assert_allclose(pg.downsample_avg(up), x, **TOL)
  with pytest.raises(ValueError, match="multiple of 2"):
    pg.downsample_avg(jnp.zeros((1, 5, 4, 1)))


def test_layer_norm_matches_theano_layer_norm_layer():
  rng = np.random.RandomState(8)
  x = rng.randn(3, 4, 4, 5) * 3.0 + 1.0
  layer = pg.LayerNorm()
  params = layer.init(_key(8), jnp.asarray(x, jnp.float32))["params"]
  assert params["gain"].shape == () and float(params["gain"]) == 1.0
  chex.assert_shape(params["bias"], (5,))
  params = {"gain": jnp.float32(1.7), "bias": _randn(rng, 5)}
  out = layer.apply({"params": params}, jnp.asarray(x, jnp.float32))
  expect = ref.layer_norm(ref.nchw(x), 1.7, np.asarray(params["bias"], np.float64))
  np.testing.assert_allclose(out, ref.nhwc(expect), **TOL)
  # Per sample: scaling one sample leaves the others unchanged and itself almost unchanged.
  x2 = x.copy()
  x2[0] *= 10.0
  out2 = layer.apply({"params": params}, jnp.asarray(x2, jnp.float32))
  np.testing.assert_allclose(out2[1:], out[1:], rtol=1e-6)
