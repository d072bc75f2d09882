"""RP-GAN networks (models/rpgan.py): official shapes, init ranges, forward passes against NumPy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from itgan_jax import models
from itgan_jax.models import rpgan as rp


def _shapes(module, x):
  variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x))
  return jax.tree.map(lambda a: a.shape, variables["params"])


def test_official_face_and_dog_shapes():
  g = rp.RPGenerator(image_size=64, features=1024)
  shapes = _shapes(g, jnp.zeros((2, 100)))
  assert shapes["c1_w"] == (100, 4 * 4 * 1024)
  # TF conv2d_transpose kernels (k, k, out, in): 1024 -> 512 -> 256 -> 128 -> 3.
  assert [shapes[f"c{i}_w"] for i in range(2, 6)] == [
      (4, 4, 512, 1024), (4, 4, 256, 512), (4, 4, 128, 256), (4, 4, 3, 128)]
  assert "c5_bn" not in shapes and shapes["c5_b"] == (3,)
  assert rp.generator_channels(128, 2048, 3) == (2048, 1024, 512, 256, 128, 3)   # dog12
  d = _shapes(rp.RPDiscriminator(features=128), jnp.zeros((2, 32, 32, 1)))   # face48 D_k
  assert [d[f"c{j}_w"] for j in range(5)] == [
      (4, 4, 1, 128), (4, 4, 128, 256), (4, 4, 256, 512), (4, 4, 512, 1024), (2, 2, 1024, 1)]
  d0 = _shapes(rp.RPDiscriminator(features=64), jnp.zeros((2, 64, 64, 3)))   # face1 (disc0.py)
  assert [d0[f"c{j}_w"][-1] for j in range(6)] == [64, 128, 256, 512, 1024, 1]
  assert d0["c0_w"] == (4, 4, 3, 64)


def _check_uniform(name, w, fan_in):
  bound = math.sqrt(3.0 / fan_in)
  w = np.asarray(w, np.float64).ravel()
  assert np.abs(w).max() <= bound * (1 + 1e-6), name
  assert np.abs(w).max() > 0.95 * bound, name
  np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.1, err_msg=name)


def test_init_is_uniform_in_plus_minus_sqrt_3_over_fan_in_with_zero_biases(rbg_prng):
  g = rp.RPGenerator(image_size=16, out_channels=3, features=64)
  gp = jax.jit(g.init)(jax.random.PRNGKey(0), jnp.zeros((4, 20)))["params"]
  _check_uniform("g c1", gp["c1_w"], 20)
  for name, c_in in (("c2_w", 64), ("c3_w", 32)):
    _check_uniform(name, gp[name], 16 * c_in)
  assert not np.any(gp["c3_b"]) and not np.any(gp["c1_bn"]["bias"])
  d = rp.RPDiscriminator(features=32)
  dp = jax.jit(d.init)(jax.random.PRNGKey(1), jnp.zeros((2, 16, 16, 1)))["params"]
  for j, c_in in enumerate((1, 32, 64)):
    _check_uniform(f"d c{j}", dp[f"c{j}_w"], 16 * c_in)
    assert not np.any(dp[f"c{j}_b"])
  _check_uniform("d c3", dp["c3_w"], 4 * 128)


def _np_conv(x, w, stride, pad):
  """Cross-correlation NHWC x HWIO with symmetric zero padding (TF conv2d 'VALID' after tf.pad)."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  k = w.shape[0]
  out = (x.shape[1] - k) // stride + 1
  y = np.zeros((x.shape[0], out, out, w.shape[-1]))
  for i in range(out):
    for j in range(out):
      y[:, i, j] = np.einsum("nabc,abco->no",
                             x[:, i * stride:i * stride + k, j * stride:j * stride + k], w)
  return y


def _random_params(params, seed):
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.RandomState(seed)
  return jax.tree.unflatten(tree, [rng.randn(*l.shape).astype(np.float32) * 0.3 for l in leaves])


def test_discriminator_matches_numpy():
  """disc.py: [pad 1, 4x4 stride-2 conv, + b, max(0.2x, x)] x (log2 S - 1), 2x2 VALID conv + b."""
  d = rp.RPDiscriminator(features=2)
  x = np.random.RandomState(0).uniform(-1, 1, (3, 8, 8, 2)).astype(np.float32)
  p = _random_params(jax.eval_shape(d.init, jax.random.PRNGKey(0), jnp.asarray(x))["params"], 1)
  h = x.astype(np.float64)
  for j in range(2):
    h = _np_conv(h, p[f"c{j}_w"], 2, 1) + p[f"c{j}_b"]
    h = np.maximum(0.2 * h, h)
  want = (_np_conv(h, p["c2_w"], 1, 0) + p["c2_b"])[:, 0, 0, 0]
  got = jax.jit(d.apply)({"params": p}, jnp.asarray(x))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="power of two"):
    d.apply({"params": p}, jnp.zeros((1, 12, 12, 2)))


def _np_deconv_same(x, w, stride=2):
  """TF conv2d_transpose 'SAME', kernel (k, k, out, in): y[u s + a - p] += x[u] w[a], p = the
  'SAME' padding before of the forward conv from the output to the input size."""
  n, side, _, _ = x.shape
  k, out_side = w.shape[0], side * stride
  p = max((side - 1) * stride + k - out_side, 0) // 2
  y = np.zeros((n, out_side, out_side, w.shape[2]))
  for u in range(side):
    for v in range(side):
      for a in range(k):
        for b in range(k):
          r, c = u * stride + a - p, v * stride + b - p
          if 0 <= r < out_side and 0 <= c < out_side:
            y[:, r, c] += x[:, u, v] @ w[a, b].T
  return y


def _np_bn(h, eps=1e-3):
  mean = h.mean(axis=(0, 1, 2))
  var = ((h - mean) ** 2).mean(axis=(0, 1, 2))
  return (h - mean) / np.sqrt(var + eps)


def test_generator_matches_numpy():
  """gen.py: z W -> reshape 4x4xf1 -> BN (eps 1e-3) + b -> ReLU -> [deconv -> BN + b -> ReLU]
  -> deconv + b -> tanh."""
  g = rp.RPGenerator(image_size=16, out_channels=3, features=4)
  z = np.random.RandomState(2).uniform(-1, 1, (5, 6)).astype(np.float32)
  p = _random_params(jax.eval_shape(g.init, jax.random.PRNGKey(0), jnp.asarray(z))["params"], 3)
  h = (z.astype(np.float64) @ p["c1_w"]).reshape(5, 4, 4, 4)
  h = np.maximum(_np_bn(h) + p["c1_bn"]["bias"], 0)
  h = np.maximum(_np_bn(_np_deconv_same(h, p["c2_w"])) + p["c2_bn"]["bias"], 0)
  want = np.tanh(_np_deconv_same(h, p["c3_w"]) + p["c3_b"])
  got = jax.jit(g.apply)({"params": p}, jnp.asarray(z))
  assert got.shape == (5, 16, 16, 3)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_registry_builds_the_family_and_rejects_bad_sizes():
  cfg = ml_collections.ConfigDict(dict(name="rpgan", g_features=32, d_features=8))
  g, d = models.build(cfg, 1, (32, 32, 3))
  assert isinstance(g, rp.RPGenerator) and isinstance(d, rp.RPDiscriminator)
  assert (g.image_size, g.out_channels, d.features) == (32, 3, 8)
  with pytest.raises(ValueError, match="power of two >= 8"):
    models.build(cfg, 1, (28, 28, 1))
  with pytest.raises(ValueError, match="g_features=0"):
    models.build(ml_collections.ConfigDict(dict(name="rpgan", g_features=0, d_features=8)), 1,
                 (32, 32, 3))
  with pytest.raises(ValueError, match="too small to halve"):
    models.build(ml_collections.ConfigDict(dict(name="rpgan", g_features=2, d_features=8)), 1,
                 (64, 64, 3))


def test_auto_strategy_is_the_measured_choice_per_backend_and_k():
  assert [rp.resolve_strategy("auto", k, "cpu") for k in (1, 12, 23, 24, 48)] == [
      "vmap", "vmap", "vmap", "map", "map"]   # RESULTS.md, "RP-GAN step"
  assert rp.resolve_strategy("auto", 48, "gpu") == "vmap"
  assert rp.resolve_strategy("shard", 48, "cpu") == "shard"
  with pytest.raises(ValueError, match="k_strategy='pmap' must be one of"):
    rp.resolve_strategy("pmap", 4)
