"""Feature matching (Salimans 2016, Sec. 3.1): ||E_x f(x) - E_z f(G(z))||, over batch means.

Official code: MNIST script `mean((mean_b f_gen - mean_b f_real)^2)` ('l2'); CIFAR/SVHN scripts
`mean(|mean_b f_unl - mean_b f_gen|)` ('l1', although the paper writes ||.||_2^2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DISTANCES = ("l2", "l1")


def feature_matching_loss(feat_real: jax.Array, feat_gen: jax.Array,
                          distance: str = "l2") -> jax.Array:
  """Mean over feature dimensions of the squared ('l2') or absolute ('l1') batch-mean difference."""
  axes = tuple(range(feat_real.ndim - 1)) if feat_real.ndim > 2 else (0,)
  diff = jnp.mean(feat_gen, axis=axes) - jnp.mean(feat_real, axis=axes)
  if distance == "l2":
    return jnp.mean(jnp.square(diff))
  if distance == "l1":
    return jnp.mean(jnp.abs(diff))
  raise ValueError(f"feature matching distance {distance!r} is not one of {DISTANCES}")
