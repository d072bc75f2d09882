"""fast_random.normal: the same numbers as jax.random.normal, from an unrolled threefry-2x32."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from scipy import special

from itgan_jax.nn import fast_random
from itgan_jax.nn.noise import GaussianNoise


@pytest.mark.parametrize("key, count, expected", [
    # Known-answer vectors of Threefry-2x32-20 (Salmon et al. 2011, Random123 kat_vectors).
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
])
def test_threefry2x32_known_answers(key, count, expected):
  u32 = lambda v: jnp.asarray(np.uint32(v))
  out = fast_random.threefry2x32(u32(key[0]), u32(key[1]), u32(count[0]), u32(count[1]))
  assert tuple(int(o) for o in out) == expected


def _numpy_normal(key_words, shape):
  """NumPy re-derivation: 32 random bits per element -> uniform in (-1, 1) -> sqrt(2) erfinv."""
  k1, k2 = (jnp.asarray(np.uint32(w)) for w in key_words)
  idx = np.arange(int(np.prod(shape)), dtype=np.uint32)
  a, b = fast_random.threefry2x32(k1, k2, jnp.zeros(idx.shape, jnp.uint32), jnp.asarray(idx))
  bits = np.asarray(a) ^ np.asarray(b)
  f = ((bits >> 9) | np.uint32(0x3F800000)).view(np.float32).astype(np.float64) - 1.0  # [0, 1)
  lo = float(np.nextafter(np.float32(-1), np.float32(0)))
  u = np.maximum(lo, f * 2.0 + lo)
  return (np.sqrt(2.0) * special.erfinv(u)).reshape(shape)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 11), (300, 784)])
def test_normal_equals_jax_random_normal_bit_for_bit(shape):
  for seed in range(3):
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 17)
    expected = jax.random.normal(key, shape, jnp.float32)
    chex.assert_trees_all_equal(fast_random.normal(key, shape), expected)
    chex.assert_trees_all_equal(jax.jit(fast_random.normal, static_argnums=1)(key, shape),
                                expected)
    # And the distribution transform agrees with an independent float64 NumPy/SciPy derivation.
    np.testing.assert_allclose(np.asarray(expected), _numpy_normal(np.asarray(key), shape),
                               rtol=2e-5, atol=2e-5)
  typed = jax.random.key(5)
  chex.assert_trees_all_equal(fast_random.normal(typed, shape),
                              jax.random.normal(typed, shape, jnp.float32))


def test_normal_falls_back_for_other_dtypes_and_keys():
  key = jax.random.PRNGKey(3)
  out = fast_random.normal(key, (4, 3), jnp.bfloat16)
  assert out.dtype == jnp.bfloat16
  chex.assert_trees_all_equal(out, jax.random.normal(key, (4, 3), jnp.bfloat16))
  rbg = jax.random.key(3, impl="rbg")
  chex.assert_trees_all_equal(fast_random.normal(rbg, (4, 3)),
                              jax.random.normal(rbg, (4, 3), jnp.float32))


def test_noise_layer_draws_jax_random_normal_and_is_sharding_invariant():
  chex.assert_devices_available(8, "cpu")
  x = jnp.asarray(np.random.RandomState(0).randn(16, 40), jnp.float32)
  key = jax.random.PRNGKey(1)
  layer = GaussianNoise(0.5)
  apply = lambda v: layer.apply({}, v, train=True, rngs={"noise": key})
  # The key flax hands the layer from the `noise` stream, and the layer's output from it.
  layer_key = layer.apply({}, x, rngs={"noise": key}, method=lambda m, _: m.make_rng("noise"))
  np.testing.assert_array_equal(apply(x), x + 0.5 * jax.random.normal(layer_key, x.shape))
  # Under jit the same numbers whether the batch lives on one device or is split over eight.
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  xs = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
  single = jax.jit(apply)(x)
  sharded = jax.jit(apply)(xs)
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))
  np.testing.assert_allclose(np.asarray(single), np.asarray(apply(x)), rtol=0, atol=3e-7)
