"""K+1 loss, feature matching, noise, batch-stat norm, official Adam, schedules, EMA vs NumPy."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.optim import factory
from itgan_jax.losses import feature_matching, ssl
from itgan_jax.nn.batchnorm import BatchStatNorm
from itgan_jax.nn.noise import GaussianNoise
from itgan_jax.optim import ema, schedules
from tests.helpers import load_config


def _np_softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def test_k_plus_one_loss_equals_explicit_k_plus_one_softmax():
  rng = np.random.RandomState(0)
  lab, unl, gen = (rng.randn(6, 10).astype(np.float64) * 3 for _ in range(3))
  y = rng.randint(0, 10, 6)
  # Explicit (K+1)-way softmax with an 11th logit fixed at 0.
  p = lambda l: _np_softmax(np.concatenate([l, np.zeros((l.shape[0], 1))], 1))
  # Supervised part: log p(y | x, y < K+1) = l_y - LSE(l).
  p_lab = p(lab)
  ref_lab = -np.mean(np.log(p_lab[np.arange(6), y] / (1 - p_lab[:, 10])))
  ref_unl = 0.5 * np.mean(-np.log(1 - p(unl)[:, 10])) + 0.5 * np.mean(-np.log(p(gen)[:, 10]))
  loss, aux = ssl.discriminator_loss(jnp.asarray(lab, jnp.float32), jnp.asarray(y),
                                     jnp.asarray(unl, jnp.float32), jnp.asarray(gen, jnp.float32),
                                     unlabeled_weight=0.7)
  np.testing.assert_allclose(aux["loss_lab"], ref_lab, rtol=1e-5)
  np.testing.assert_allclose(aux["loss_unl"], ref_unl, rtol=1e-5)
  np.testing.assert_allclose(loss, ref_lab + 0.7 * ref_unl, rtol=1e-5)
  np.testing.assert_allclose(aux["train_err"], np.mean(lab.argmax(1) != y))


def test_k_plus_one_loss_is_finite_for_extreme_logits():
  big = jnp.full((4, 10), 100.0).at[:, 0].set(-100.0)
  loss, aux = ssl.discriminator_loss(big, jnp.zeros(4, jnp.int32), -big, big)
  grads = jax.grad(lambda l: ssl.discriminator_loss(l, jnp.zeros(4, jnp.int32), -l, l)[0])(big)
  chex.assert_tree_all_finite((loss, aux, grads))


def test_feature_matching_l2_and_l1():
  rng = np.random.RandomState(1)
  real, gen = rng.randn(32, 7), rng.randn(32, 7) + 0.5
  diff = gen.mean(0) - real.mean(0)
  np.testing.assert_allclose(feature_matching.feature_matching_loss(real, gen, "l2"),
                             np.mean(diff**2), rtol=1e-5)
  np.testing.assert_allclose(feature_matching.feature_matching_loss(real, gen, "l1"),
                             np.mean(np.abs(diff)), rtol=1e-5)
  with pytest.raises(ValueError, match="l3"):
    feature_matching.feature_matching_loss(real, gen, "l3")


def test_gaussian_noise_train_only_with_right_std():
  x = jnp.zeros((20000, 4))
  layer = GaussianNoise(0.5)
  out = layer.apply({}, x, train=True, rngs={"noise": jax.random.PRNGKey(0)})
  np.testing.assert_allclose(np.std(out), 0.5, rtol=0.02)
  np.testing.assert_array_equal(layer.apply({}, x, train=False), x)


def test_batch_stat_norm_matches_numpy():
  x = np.random.RandomState(2).randn(50, 6).astype(np.float32) * 4 + 2
  layer = BatchStatNorm(use_scale=True)
  variables = layer.init(jax.random.PRNGKey(0), x)
  variables = jax.tree.map(lambda v: v + 0.3, variables)
  ref = (x - x.mean(0)) / np.sqrt(1e-6 + x.var(0)) * 1.3 + 0.3
  np.testing.assert_allclose(layer.apply(variables, x), ref, rtol=1e-4, atol=1e-5)


def test_official_adam_eps_inside_sqrt_matches_numpy():
  """nn.adam_updates: m_hat / sqrt(v_hat + 1e-8), beta1 0.5, beta2 0.999."""
  config = load_config("mnist_ssl")
  tx = factory.build_optimizer(config.optim)
  lr = 0.003
  rng = np.random.RandomState(3)
  p = rng.randn(5)
  params = jnp.asarray(p, jnp.float32)
  state = tx.init(params)
  m = v = np.zeros(5)
  for t in range(1, 6):
    g = rng.randn(5) * 10.0 ** rng.uniform(-6, 0)
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = params - lr * updates
    m = 0.5 * m + 0.5 * g
    v = 0.999 * v + 0.001 * g**2
    p = p - lr * (m / (1 - 0.5**t)) / np.sqrt(v / (1 - 0.999**t) + 1e-8)
    np.testing.assert_allclose(params, p, rtol=1e-5, atol=1e-7)


def test_linear_decay_schedule_matches_official_cifar_formula():
  sched = schedules.make_schedule("linear_decay", 3e-4, start_epoch=800, end_epoch=1200)
  for epoch in (0, 500, 800, 801, 1000, 1199, 1200, 1300):
    np.testing.assert_allclose(sched(epoch), 3e-4 * max(min(3 - epoch / 400, 1), 0),
                               rtol=1e-5, atol=1e-12)
  with pytest.raises(ValueError, match="end_epoch"):
    schedules.make_schedule("linear_decay", 1.0, start_epoch=5)
  with pytest.raises(ValueError, match="optim.schedule"):
    schedules.make_schedule("cosine", 1.0)


def test_ema_zero_init_official_and_debiased():
  params = {"w": jnp.array([1.0, -2.0])}
  a = ema.ema_init(params, zero_init=True)
  ref = np.zeros(2)
  for t in range(1, 4):
    a = ema.ema_update(a, params, 0.1)
    ref = ref + 0.1 * (np.array([1.0, -2.0]) - ref)
    np.testing.assert_allclose(a["w"], ref, rtol=1e-6)
  # Constant params: the debiased zero-init EMA recovers them exactly.
  np.testing.assert_allclose(ema.ema_debiased(a, 3, 0.1)["w"], [1.0, -2.0], rtol=1e-5)
  np.testing.assert_array_equal(ema.ema_init(params, zero_init=False)["w"], params["w"])
