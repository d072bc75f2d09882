"""The K+1 semi-supervised loss against an explicit (K+1)-way softmax in NumPy (papers.md A.2)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.losses import ssl


def _np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_k_plus_one(logits):
  """Log-probabilities of the explicit (K+1)-way softmax whose (K+1)-th logit is fixed at 0."""
  return _np_log_softmax(np.concatenate([logits, np.zeros((logits.shape[0], 1))], axis=1))


def _np_losses(lab, y, unl, gen):
  lp_lab, lp_unl, lp_gen = _np_k_plus_one(lab), _np_k_plus_one(unl), _np_k_plus_one(gen)
  # Supervised: -log p(y | x, y <= K) = -(log p_y - log(1 - p_{K+1})).
  loss_lab = -np.mean(lp_lab[np.arange(len(y)), y] - np.log1p(-np.exp(lp_lab[:, -1])))
  # Unsupervised: 0.5 E[-log(1 - p_{K+1}(x_unl))] + 0.5 E[-log p_{K+1}(G(z))].
  loss_unl = (0.5 * np.mean(-np.log1p(-np.exp(lp_unl[:, -1]))) + 0.5 * np.mean(-lp_gen[:, -1]))
  return loss_lab, loss_unl


def _logits(seed, n=6, k=10, scale=3.0):
  return np.random.RandomState(seed).randn(n, k) * scale


def test_k_plus_one_loss_equals_explicit_k_plus_one_softmax():
  lab, unl, gen = _logits(0), _logits(1), _logits(2)
  y = np.random.RandomState(3).randint(0, 10, 6)
  ref_lab, ref_unl = _np_losses(lab, y, unl, gen)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  loss, aux = ssl.discriminator_loss(f32(lab), jnp.asarray(y), f32(unl), f32(gen),
                                     unlabeled_weight=0.7)
  assert set(aux) == {"loss_lab", "loss_unl", "train_err"}
  np.testing.assert_allclose(aux["loss_lab"], ref_lab, rtol=1e-5)
  np.testing.assert_allclose(aux["loss_unl"], ref_unl, rtol=1e-5)
  np.testing.assert_allclose(loss, ref_lab + 0.7 * ref_unl, rtol=1e-5)
  np.testing.assert_allclose(aux["train_err"], np.mean(lab.argmax(1) != y))
  np.testing.assert_allclose(ssl.unsupervised_loss(f32(unl), f32(gen)), ref_unl, rtol=1e-5)


def test_supervised_part_is_plain_k_way_cross_entropy():
  lab = _logits(4, n=8, k=5)
  y = np.random.RandomState(5).randint(0, 5, 8)
  ref = -np.mean(_np_log_softmax(lab)[np.arange(8), y])
  np.testing.assert_allclose(ssl.supervised_loss(jnp.asarray(lab, jnp.float32), jnp.asarray(y)),
                             ref, rtol=1e-5)


def test_official_theano_expression_and_log_sum_exp():
  unl, gen = _logits(6), _logits(7)
  lse = lambda z: np.log(np.exp(z).sum(1))
  softplus = lambda z: np.log1p(np.exp(z))
  ref = (-0.5 * np.mean(lse(unl)) + 0.5 * np.mean(softplus(lse(unl)))
         + 0.5 * np.mean(softplus(lse(gen))))
  np.testing.assert_allclose(ssl.log_sum_exp(jnp.asarray(unl, jnp.float32)), lse(unl), rtol=1e-5)
  np.testing.assert_allclose(ssl.unsupervised_loss(jnp.asarray(unl, jnp.float32),
                                                   jnp.asarray(gen, jnp.float32)), ref, rtol=1e-5)


def test_gradients_match_the_explicit_softmax():
  """d loss / d logits = softmax-based closed forms (float64 NumPy)."""
  lab, unl, gen = _logits(8, n=4, k=3), _logits(9, n=4, k=3), _logits(10, n=4, k=3)
  y = np.array([0, 2, 1, 2])
  grads = jax.grad(lambda a, b, c: ssl.discriminator_loss(a, jnp.asarray(y), b, c)[0],
                   argnums=(0, 1, 2))(*(jnp.asarray(a, jnp.float32) for a in (lab, unl, gen)))
  p_lab = np.exp(_np_log_softmax(lab))
  ref_lab = (p_lab - np.eye(3)[y]) / 4
  p_unl, p_gen = np.exp(_np_k_plus_one(unl)), np.exp(_np_k_plus_one(gen))
  # -0.5 log(1 - p_{K+1}) = -0.5 log sigmoid(LSE): gradient -0.5 p_{K+1} softmax_K(l) / N.
  ref_unl = -0.5 * p_unl[:, -1:] * np.exp(_np_log_softmax(unl)) / 4
  # -0.5 log p_{K+1} = 0.5 softplus(LSE): gradient 0.5 p_k (k <= K) / N.
  ref_gen = 0.5 * p_gen[:, :-1] / 4
  for g, r in zip(grads, (ref_lab, ref_unl, ref_gen)):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-7)


def test_extreme_logits_stay_finite_and_accurate():
  big = np.full((4, 10), 100.0)
  big[:, 0] = -100.0
  y = np.array([0, 1, 2, 3])
  for lab, unl, gen in ((big, -big, big), (-big, big, -big), (big * 10, -big * 10, big * 10)):
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    loss, aux = ssl.discriminator_loss(f32(lab), jnp.asarray(y), f32(unl), f32(gen))
    grads = jax.grad(lambda a, b, c: ssl.discriminator_loss(a, jnp.asarray(y), b, c)[0],
                     argnums=(0, 1, 2))(f32(lab), f32(unl), f32(gen))
    chex.assert_tree_all_finite((loss, aux, grads))
    ref_lab, ref_unl = _np_losses(lab, y, unl, gen)
    np.testing.assert_allclose(aux["loss_lab"], ref_lab, rtol=1e-5)
    np.testing.assert_allclose(aux["loss_unl"], ref_unl, rtol=1e-5, atol=1e-6)
  # Confidently right on everything: loss ~ 0 (no cancellation error left over).
  loss_unl = ssl.unsupervised_loss(jnp.full((2, 10), 60.0), jnp.full((2, 10), -60.0))
  assert 0.0 <= float(loss_unl) < 1e-20


def test_classification_error_and_shape_errors():
  logits = jnp.array([[0.0, 1.0, 0.5], [2.0, 2.0, 0.0], [0.1, 0.0, 0.3]])
  # Ties go to the first index (Theano/NumPy argmax).
  np.testing.assert_allclose(ssl.classification_error(logits, jnp.array([1, 0, 1])), 1 / 3,
                             rtol=1e-6)
  with pytest.raises(ValueError, match="labels must have shape"):
    ssl.supervised_loss(logits, jnp.array([[1], [0], [1]]))
  with pytest.raises(ValueError, match="logits_gen"):
    ssl.unsupervised_loss(logits, logits[0])


def test_jit_and_weight():
  lab, unl, gen = (jnp.asarray(_logits(s), jnp.float32) for s in (11, 12, 13))
  y = jnp.arange(6) % 10
  f = jax.jit(ssl.discriminator_loss, static_argnames=())
  loss, aux = f(lab, y, unl, gen, 0.0)
  np.testing.assert_allclose(loss, aux["loss_lab"], rtol=1e-6)
