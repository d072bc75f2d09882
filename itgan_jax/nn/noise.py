"""Additive Gaussian noise (official `GaussianNoiseLayer`, improved-gan `nn.py`).

x + N(0, sigma^2) at train time; identity when deterministic (`train=False`) or sigma == 0.
The normals are `jax.random.normal(key, x.shape, x.dtype)` bit for bit, computed by
`itgan_jax.nn.fast_random.normal` (the threefry hash unrolled so XLA:CPU fuses hash, erf_inv and
the addition into one loop instead of running JAX's rolled CPU loop round by round).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from itgan_jax.nn import fast_random


class GaussianNoise(nn.Module):
  """x + sigma * N(0, 1) drawn from the `noise` rng stream when `train`; identity otherwise."""
  sigma: float

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    if self.sigma < 0:
      raise ValueError(f"GaussianNoise: sigma must be >= 0, got {self.sigma}")
    if not train or self.sigma == 0:
      return x
    return x + self.sigma * fast_random.normal(self.make_rng("noise"), x.shape, x.dtype)
