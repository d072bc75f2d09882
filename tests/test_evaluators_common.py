"""evaluators/common.py: generation split over the devices equals one-device generation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.evaluators import common
from itgan_jax.train import sharding


class _BatchStatGenerator:
  """generate(z) = (z - batch mean) * w: its output depends on the whole batch, as a BN G."""

  def sample_latent(self, key, num):
    return jax.random.normal(key, (num, 3))

  def generate(self, state, z):
    return (z - jnp.mean(z, axis=0)) * state


def test_generation_split_over_devices_equals_one_device():
  variant, state, key = _BatchStatGenerator(), jnp.float32(2.0), jax.random.PRNGKey(3)
  one = common.latent_generator(variant, 8)(state, key)
  mesh = sharding.make_mesh(4)
  split_fn = common.latent_generator(variant, 8, mesh)
  split = split_fn(state, key)
  assert split.sharding.is_fully_replicated
  np.testing.assert_allclose(split, one, rtol=1e-6, atol=1e-6)
  hlo = split_fn.lower(state, key).compile().as_text()
  assert "all-reduce" in hlo or "all-gather" in hlo  # the work was split, the stats are global
  odd = common.latent_generator(variant, 6, mesh)(state, key)  # 6 rows on 4 devices: unsplit
  assert odd.shape == (6, 3)
