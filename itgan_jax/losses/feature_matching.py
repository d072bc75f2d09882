"""Feature matching (Salimans 2016, Sec. 3.1): ||E_x f(x) - E_z f(G(z))|| over batch means.

Official code: MNIST `mean((mean_b f_gen - mean_b f_real)^2)` ('l2', `train_mnist_feature_matching.py`);
CIFAR/SVHN `mean(|mean_b f_unl - mean_b f_gen|)` ('l1', although the paper writes ||.||_2^2).
The batch mean is over axis 0 only (as Theano's `T.mean(f, axis=0)`), the outer mean over all
remaining feature entries; the two batches may have different sizes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DISTANCES = ("l2", "l1")


def feature_matching_loss(feat_real: jax.Array, feat_gen: jax.Array,
                          distance: str = "l2") -> jax.Array:
  """Mean over feature entries of the squared ('l2') or absolute ('l1') batch-mean difference."""
  if distance not in DISTANCES:
    raise ValueError(f"feature matching distance {distance!r} is not one of {DISTANCES} "
                     "('l2': official MNIST squared error, 'l1': official CIFAR/SVHN)")
  if feat_real.ndim < 2 or feat_real.shape[1:] != feat_gen.shape[1:]:
    raise ValueError(f"feature matching needs (batch, features...) arrays with equal feature "
                     f"shapes, got {feat_real.shape} (real) and {feat_gen.shape} (generated)")
  diff = jnp.mean(feat_gen, axis=0) - jnp.mean(feat_real, axis=0)
  if distance == "l2":
    return jnp.mean(jnp.square(diff))
  return jnp.mean(jnp.abs(diff))
