"""Batch normalisation as the official generators use it (improved-gan `nn.py` `BatchNormLayer`).

y = (x - mean) / sqrt(eps + var) * g + b with the *batch* mean and biased variance over every axis
but the feature axis, eps 1e-6. The official G is always called with deterministic=False, so the
running averages that layer maintains are never used; they are not kept here. The official G uses
`g=None` (no scale) and a learned bias: `BatchStatNorm(use_scale=False)`. Under jit with a
batch-sharded input the statistics are over the global batch (plain jnp.mean, no per-device code).
A bfloat16 input (config.precision.compute_dtype) is normalised in float32 and the result cast
back, so the batch statistics keep float32 precision; float32 inputs are untouched.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchStatNorm(nn.Module):
  """Batch-statistics normalisation; optional learned scale g (init 1) and bias b (init 0) in
  `params`, one per feature along `axis`."""
  use_scale: bool = False
  use_bias: bool = True
  eps: float = 1e-6
  axis: int = -1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim < 2:
      raise ValueError(f"BatchStatNorm expects a batch of features (>= 2 dims), got {x.shape}")
    if not -x.ndim <= self.axis < x.ndim:
      raise ValueError(f"BatchStatNorm axis={self.axis} out of range for input of shape {x.shape}")
    axis = self.axis % x.ndim
    in_dtype = x.dtype
    x = x.astype(jnp.promote_types(in_dtype, jnp.float32))  # no-op for float32
    reduce_axes = tuple(a for a in range(x.ndim) if a != axis)
    mean = jnp.mean(x, axis=reduce_axes, keepdims=True)
    centred = x - mean
    var = jnp.mean(jnp.square(centred), axis=reduce_axes, keepdims=True)
    y = centred / jnp.sqrt(self.eps + var)
    bshape = [1] * x.ndim
    bshape[axis] = x.shape[axis]
    if self.use_scale:
      y = y * self.param("scale", nn.initializers.ones, (x.shape[axis],)).reshape(bshape)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (x.shape[axis],)).reshape(bshape)
    return y.astype(in_dtype)
