"""Gaussian-noise layer and batch-statistics norm against NumPy re-derivations of nn.py."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from itgan_jax.nn.batchnorm import BatchStatNorm
from itgan_jax.nn.noise import GaussianNoise


# --- GaussianNoise --------------------------------------------------------------------------------
def test_gaussian_noise_is_additive_with_the_right_std_from_the_noise_stream():
  x = np.random.RandomState(0).randn(4000, 5).astype(np.float32)
  layer = GaussianNoise(0.3)
  key = jax.random.PRNGKey(1)
  out = np.asarray(layer.apply({}, x, train=True, rngs={"noise": key}), np.float64)
  noise = out - x
  np.testing.assert_allclose(noise.std(), 0.3, rtol=0.02)
  np.testing.assert_allclose(noise.mean(), 0.0, atol=0.01)
  # Independent across entries, reproducible from the `noise` key, new noise for a new key.
  np.testing.assert_allclose(np.corrcoef(noise[:, 0], noise[:, 1])[0, 1], 0.0, atol=0.06)
  np.testing.assert_array_equal(layer.apply({}, x, train=True, rngs={"noise": key}), out)
  out2 = layer.apply({}, x, train=True, rngs={"noise": jax.random.PRNGKey(2)})
  assert not np.allclose(out2, out)


def test_gaussian_noise_identity_when_deterministic_or_zero_sigma():
  x = jnp.asarray(np.random.RandomState(1).randn(8, 3), jnp.float32)
  np.testing.assert_array_equal(GaussianNoise(0.5).apply({}, x, train=False), x)
  # sigma == 0 needs no rng at all (official `if deterministic or self.sigma == 0`).
  np.testing.assert_array_equal(GaussianNoise(0.0).apply({}, x, train=True), x)
  with pytest.raises(Exception, match="noise"):
    GaussianNoise(0.5).apply({}, x, train=True)  # no `noise` rng given
  with pytest.raises(ValueError, match="sigma"):
    GaussianNoise(-0.1).apply({}, x, train=True)


# --- BatchStatNorm --------------------------------------------------------------------------------
def _np_bn(x, g, b, eps, axis):
  axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
  shape = [1] * x.ndim
  shape[axis] = -1
  m = x.mean(axes, keepdims=True)
  var = ((x - m) ** 2).mean(axes, keepdims=True)  # biased
  return (x - m) / np.sqrt(eps + var) * np.reshape(g, shape) + np.reshape(b, shape)


def test_official_generator_form_has_only_a_bias():
  x = np.random.RandomState(2).randn(50, 6).astype(np.float32) * 4 + 2
  layer = BatchStatNorm()
  variables = layer.init(jax.random.PRNGKey(0), x)
  assert set(variables) == {"params"} and set(variables["params"]) == {"bias"}
  np.testing.assert_array_equal(variables["params"]["bias"], np.zeros(6))
  b = np.linspace(-1, 1, 6).astype(np.float32)
  out = layer.apply({"params": {"bias": b}}, x)
  np.testing.assert_allclose(out, _np_bn(x.astype(np.float64), 1.0, b, 1e-6, -1),
                             rtol=1e-5, atol=1e-5)


def test_scale_and_bias_over_nhwc_and_other_axis():
  rng = np.random.RandomState(3)
  x = (rng.randn(6, 5, 5, 4) * 3 + 1).astype(np.float32)
  layer = BatchStatNorm(use_scale=True)
  variables = layer.init(jax.random.PRNGKey(0), x)
  np.testing.assert_array_equal(variables["params"]["scale"], np.ones(4))
  g, b = rng.uniform(0.5, 2, 4).astype(np.float32), rng.randn(4).astype(np.float32)
  out = layer.apply({"params": {"scale": g, "bias": b}}, x)
  chex.assert_shape(out, x.shape)
  np.testing.assert_allclose(out, _np_bn(x.astype(np.float64), g, b, 1e-6, -1),
                             rtol=1e-5, atol=1e-5)
  # NCHW-style feature axis 1 and a large eps (so eps placement inside the sqrt is checked).
  layer1 = BatchStatNorm(use_scale=True, eps=0.5, axis=1)
  g5, b5 = rng.uniform(0.5, 2, 5).astype(np.float32), rng.randn(5).astype(np.float32)
  out1 = layer1.apply({"params": {"scale": g5, "bias": b5}}, x)
  np.testing.assert_allclose(out1, _np_bn(x.astype(np.float64), g5, b5, 0.5, 1),
                             rtol=1e-5, atol=1e-5)


def test_no_parameters_without_scale_and_bias_and_clear_errors():
  x = np.random.RandomState(4).randn(10, 3).astype(np.float32)
  layer = BatchStatNorm(use_scale=False, use_bias=False)
  variables = layer.init(jax.random.PRNGKey(0), x)
  assert not variables.get("params")
  out = np.asarray(layer.apply(variables, x), np.float64)
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-6)
  np.testing.assert_allclose(out.var(0), 1.0, rtol=1e-4)  # var/(var + 1e-6)
  with pytest.raises(ValueError, match="axis"):
    BatchStatNorm(axis=3).init(jax.random.PRNGKey(0), x)


def test_statistics_are_over_the_global_batch_when_sharded():
  devices = np.array(jax.devices()[:8])
  if devices.size < 2:
    pytest.skip("needs several (fake) devices")
  mesh = Mesh(devices, ("batch",))
  # Shards with very different statistics: per-device statistics would be visibly wrong.
  x = (np.random.RandomState(5).randn(8 * devices.size, 3)
       + np.repeat(np.arange(devices.size), 8)[:, None] * 3).astype(np.float32)
  layer = BatchStatNorm()
  variables = {"params": {"bias": jnp.zeros(3)}}
  xs = jax.device_put(x, NamedSharding(mesh, PartitionSpec("batch")))
  out = jax.jit(layer.apply)(variables, xs)
  np.testing.assert_allclose(out, _np_bn(x.astype(np.float64), 1.0, 0.0, 1e-6, -1),
                             rtol=1e-4, atol=1e-5)
