"""One-sided label smoothing and generator objectives against NumPy formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.losses import gan, ssl


def _sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_label_smoothed_discriminator_loss_is_a_kl():
  rng = np.random.RandomState(0)
  dr, df = rng.randn(50) * 2, rng.randn(50) * 2
  a = 0.75
  p_r, p_f = _sig(dr), _sig(df)
  kl_real = a * np.log(a / p_r) + (1 - a) * np.log((1 - a) / (1 - p_r))
  ref = 0.5 * np.mean(kl_real) + 0.5 * np.mean(-np.log(1 - p_f))
  np.testing.assert_allclose(gan.discriminator_gan_loss(dr, df, 0.75), ref, rtol=1e-5)
  # Minimum 0 where D(x) = alpha and D(G(z)) -> 0.
  np.testing.assert_allclose(
      gan.discriminator_gan_loss(jnp.full(3, np.log(3.0)), jnp.full(3, -50.0), 0.75), 0, atol=1e-6)


def test_unsmoothed_loss_equals_the_k_plus_one_unsupervised_loss():
  rng = np.random.RandomState(1)
  unl, gen_ = rng.randn(8, 10), rng.randn(8, 10)
  d_real, d_fake = ssl.log_sum_exp(unl), ssl.log_sum_exp(gen_)
  np.testing.assert_allclose(gan.discriminator_gan_loss(d_real, d_fake, 1.0),
                             ssl.unsupervised_loss(unl, gen_), rtol=1e-5)


def test_generator_objectives():
  d = np.linspace(-5, 5, 11)
  p = _sig(d)
  np.testing.assert_allclose(gan.generator_loss(d, "minimax"), np.mean(np.log(1 - p)), rtol=1e-5)
  np.testing.assert_allclose(gan.generator_loss(d, "non_saturating"), np.mean(-np.log(p)),
                             rtol=1e-5)
  t = 0.375
  np.testing.assert_allclose(gan.generator_loss(d, "kl_target", t),
                             np.mean(t * np.log(t / p) + (1 - t) * np.log((1 - t) / (1 - p))),
                             rtol=1e-5)


def test_extreme_logits_are_finite_and_bad_arguments_fail():
  d = jnp.array([-1e4, -100.0, 0.0, 100.0, 1e4])
  for kind in gan.GENERATOR_KINDS:
    assert np.isfinite(gan.generator_loss(d, kind))
    assert np.all(np.isfinite(jax.grad(lambda x: gan.generator_loss(x, kind))(d)))
  assert np.isfinite(gan.discriminator_gan_loss(d, d, 0.9))
  with pytest.raises(ValueError, match="feature_matching"):
    gan.generator_loss(d, "hinge")
  with pytest.raises(ValueError, match=r"\(0, 1\]"):
    gan.discriminator_gan_loss(d, d, 1.5)


def test_factory_validates_eagerly_and_matches_direct_call():
  d = jnp.array([-3.0, 0.5, 2.0])
  for kind in gan.GENERATOR_KINDS:
    np.testing.assert_allclose(gan.make_generator_loss(kind, 0.3)(d),
                               gan.generator_loss(d, kind, 0.3), rtol=1e-6)
  with pytest.raises(ValueError, match="not one of"):
    gan.make_generator_loss("hinge")
  with pytest.raises(ValueError, match="kl_target"):
    gan.make_generator_loss("kl_target", 0.0)
  for bad in (0.0, -0.1, 1.01):
    with pytest.raises(ValueError, match=r"label_smoothing.*\(0, 1\]"):
      gan.check_label_smoothing(bad)
  gan.check_label_smoothing(1.0)


def test_extreme_logit_values_match_the_exact_limits():
  """Far in the tails the losses follow the asymptotes softplus(x) -> x, softplus(-x) -> 0."""
  d = jnp.array([-200.0, 200.0], jnp.float32)
  np.testing.assert_allclose(gan.generator_loss(d[:1], "minimax"), 0.0, atol=1e-30)
  np.testing.assert_allclose(gan.generator_loss(d[1:], "minimax"), -200.0, rtol=1e-6)
  np.testing.assert_allclose(gan.generator_loss(d[:1], "non_saturating"), 200.0, rtol=1e-6)
  np.testing.assert_allclose(gan.generator_loss(d[1:], "non_saturating"), 0.0, atol=1e-30)
  # KL(t || sigmoid(x)) for x -> +inf grows like (1 - t) x; for x -> -inf like t |x|.
  t = 0.375
  ent = -(t * np.log(t) + (1 - t) * np.log(1 - t))
  np.testing.assert_allclose(gan.generator_loss(d[1:], "kl_target", t), (1 - t) * 200 - ent,
                             rtol=1e-5)
  np.testing.assert_allclose(gan.generator_loss(d[:1], "kl_target", t), t * 200 - ent, rtol=1e-5)
  # D's smoothed loss at the extremes: real logit +200 costs (1 - a) * 200 - H(a).
  a = 0.9
  ha = -(a * np.log(a) + (1 - a) * np.log(1 - a))
  np.testing.assert_allclose(gan.discriminator_gan_loss(d[1:], d[:1], a),
                             0.5 * ((1 - a) * 200 - ha), rtol=1e-5)
  # Gradients in the saturated tails: minimax vanishes where D rejects fakes, non-saturating not.
  g_mm = jax.grad(lambda x: gan.generator_loss(x, "minimax"))(jnp.array([-30.0]))
  g_ns = jax.grad(lambda x: gan.generator_loss(x, "non_saturating"))(jnp.array([-30.0]))
  assert abs(float(g_mm[0])) < 1e-12 and abs(float(g_ns[0]) + 1.0) < 1e-6
