"""Batch normalisation as the official generators use it (improved-gan `BatchNormLayer`).

Always batch statistics (G is always called with deterministic=False; the running averages the
official layer keeps are never used), y = (x - mean) / sqrt(eps + var) * g + b, biased variance over
every axis but the feature axis, eps 1e-6. Under jit with a batch-sharded input the statistics are
over the global batch.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchStatNorm(nn.Module):
  """Batch-statistics normalisation with optional learned scale g (init 1) and bias b (init 0)."""
  use_scale: bool = False
  use_bias: bool = True
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    centred = x - mean
    y = centred / jnp.sqrt(self.eps + jnp.mean(jnp.square(centred), axis=axes))
    if self.use_scale:
      y = y * self.param("scale", nn.initializers.ones, (x.shape[-1],))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (x.shape[-1],))
    return y
