"""WGAN-GP (ProGAN form) against NumPy re-derivations on critics with known gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.losses import wgan_gp


def _np_loss(d_real, d_fake, grad_norms, gamma, lam, drift):
  gp = np.mean((grad_norms - gamma) ** 2) / gamma ** 2
  return np.mean(d_fake) - np.mean(d_real) + lam * gp + drift * np.mean(d_real ** 2)


def test_quadratic_critic_matches_numpy():
  rng = np.random.RandomState(0)
  w = rng.randn(4, 4, 3).astype(np.float32)
  x_real = rng.randn(5, 4, 4, 3).astype(np.float32)
  x_fake = rng.randn(5, 4, 4, 3).astype(np.float32)
  u = rng.rand(5).astype(np.float32)

  def critic(x):   # D(x) = sum w x^2: grad = 2 w x
    return jnp.sum(w * x ** 2, axis=(1, 2, 3))

  loss, aux = wgan_gp.discriminator_loss(critic, x_real, x_fake, u, gamma=750.0,
                                         gp_weight=10.0, drift=0.001)
  x_hat = x_real + u[:, None, None, None] * (x_fake - x_real)
  norms = np.sqrt(np.sum((2 * w * x_hat) ** 2, axis=(1, 2, 3)))
  d_real = np.sum(w * x_real ** 2, axis=(1, 2, 3))
  d_fake = np.sum(w * x_fake ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(loss, _np_loss(d_real, d_fake, norms, 750.0, 10.0, 0.001),
                             rtol=1e-5)
  np.testing.assert_allclose(aux["grad_norm"], norms.mean(), rtol=1e-5)
  np.testing.assert_allclose(aux["wdist"], d_real.mean() - d_fake.mean(), rtol=1e-5)


def test_penalty_uses_the_gradient_of_the_summed_scores():
  """With a cross-sample term (as minibatch stddev) the official summed-score gradient is
  w + c v; a per-sample gradient would give w + c v / N."""
  rng = np.random.RandomState(1)
  n = 4
  w, v = rng.randn(2, 6).astype(np.float32)
  c = 3.0
  x = rng.randn(n, 6).astype(np.float32)

  def critic(x):
    return x @ w + c * jnp.mean(x @ v)

  _, norms = wgan_gp.gradient_penalty(critic, jnp.asarray(x), gamma=1.0)
  np.testing.assert_allclose(norms, np.full(n, np.linalg.norm(w + c * v)), rtol=1e-5)
  per_sample = np.linalg.norm(w + c * v / n)
  assert abs(float(norms[0]) - per_sample) > 1e-3


def test_interpolation_factor_is_per_sample():
  x_real, x_fake = jnp.zeros((3, 2, 2, 1)), jnp.ones((3, 2, 2, 1))
  out = wgan_gp.interpolate(x_real, x_fake, jnp.array([0.0, 0.5, 1.0]))
  np.testing.assert_array_equal(np.asarray(out)[:, 0, 0, 0], [0.0, 0.5, 1.0])
  assert np.all(np.asarray(out) == np.asarray(out)[:, :1, :1, :1])   # constant per sample
  with pytest.raises(ValueError, match="one per sample"):
    wgan_gp.interpolate(x_real, x_fake, jnp.zeros((3, 2, 2, 1)))


def test_bad_gamma_and_generator_loss():
  with pytest.raises(ValueError, match="gp_target"):
    wgan_gp.gradient_penalty(lambda x: x.sum(1), jnp.ones((2, 3)), gamma=0.0)
  np.testing.assert_allclose(wgan_gp.generator_loss(jnp.array([1.0, 3.0])), -2.0)


def test_loss_gradient_flows_to_the_critic_parameters_through_the_penalty():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
  y = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
  u = jnp.full((4,), 0.5)

  def loss(w):
    return wgan_gp.discriminator_loss(lambda a: a @ w, x, y, u, gamma=1.0, gp_weight=10.0,
                                      drift=0.0)[0]

  w = jnp.array([0.3, -0.2, 0.1])
  # d/dw of the penalty term: 10 * 2 (||w|| - 1) w / ||w||, plus the linear part mean(y - x).
  norm = np.linalg.norm(np.asarray(w))
  expected = np.asarray(jnp.mean(y, 0) - jnp.mean(x, 0)) + 20 * (norm - 1) * np.asarray(w) / norm
  np.testing.assert_allclose(jax.grad(loss)(w), expected, rtol=1e-5, atol=1e-6)
