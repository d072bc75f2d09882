"""Feature-matching losses of the official scripts against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.losses.feature_matching import feature_matching_loss


def _feats(seed, n, shape=(7,), shift=0.0):
  return (np.random.RandomState(seed).randn(n, *shape) + shift).astype(np.float32)


def test_official_mnist_squared_error_of_batch_means():
  real, gen = _feats(0, 32), _feats(1, 32, shift=0.5)
  # train_mnist_feature_matching.py: mean((mean_b f_gen - mean_b f_real)^2).
  ref = np.mean((gen.astype(np.float64).mean(0) - real.mean(0)) ** 2)
  np.testing.assert_allclose(feature_matching_loss(real, gen, "l2"), ref, rtol=1e-5)
  np.testing.assert_allclose(feature_matching_loss(real, gen), ref, rtol=1e-5)  # default 'l2'


def test_official_cifar_mean_absolute_error_of_batch_means():
  unl, gen = _feats(2, 32, (192,)), _feats(3, 32, (192,), shift=-0.2)
  # train_cifar_feature_matching.py: mean(|mean_b f_unl - mean_b f_gen|).
  ref = np.mean(np.abs(unl.astype(np.float64).mean(0) - gen.mean(0)))
  np.testing.assert_allclose(feature_matching_loss(unl, gen, "l1"), ref, rtol=1e-5)
  assert not np.isclose(ref, np.mean((unl.mean(0) - gen.mean(0)) ** 2))


def test_batch_mean_only_over_axis_zero_and_unequal_batch_sizes():
  real, gen = _feats(4, 10, (3, 4)), _feats(5, 6, (3, 4), shift=1.0)
  ref = np.mean((gen.astype(np.float64).mean(0) - real.mean(0)) ** 2)  # per (3, 4) entry
  np.testing.assert_allclose(feature_matching_loss(real, gen, "l2"), ref, rtol=1e-5)


def test_gradient_flows_to_generated_features_only_through_their_mean():
  real, gen = jnp.asarray(_feats(6, 8)), jnp.asarray(_feats(7, 8, shift=0.3))
  grad = jax.grad(lambda g: feature_matching_loss(real, g, "l2"))(gen)
  diff = np.asarray(gen, np.float64).mean(0) - np.asarray(real, np.float64).mean(0)
  ref = np.broadcast_to(2 * diff / (7 * 8), (8, 7))  # d/dg_ij mean_k (mean_b g_bk - m_k)^2
  np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-7)


def test_identical_batches_give_zero_and_errors_are_clear():
  f = _feats(8, 5)
  assert float(feature_matching_loss(f, f, "l1")) == 0.0
  with pytest.raises(ValueError, match="'l3'.*'l2'"):
    feature_matching_loss(f, f, "l3")
  with pytest.raises(ValueError, match="feature shapes"):
    feature_matching_loss(f, _feats(9, 5, (6,)), "l2")
