"""The K+1 semi-supervised discriminator loss with a fixed zero fake logit (Salimans 2016, Sec. 5).

D outputs K class logits l; the (K+1)-th "generated" logit is fixed at 0, so with Z = sum exp(l):
p(y=k|x) = exp(l_k)/(Z+1), D(x) = Z/(Z+1) = sigmoid(LSE(l)). Official Theano form (papers.md A.2):
  loss_lab = -mean(l_y) + mean(LSE(l_lab))
  loss_unl = -0.5 mean(LSE(l_unl)) + 0.5 mean(softplus(LSE(l_unl))) + 0.5 mean(softplus(LSE(l_gen)))
           = 0.5 E[-log D(x)] + 0.5 E[-log(1 - D(G(z)))].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def log_sum_exp(logits: jax.Array) -> jax.Array:
  """Max-shifted log-sum-exp over the last axis."""
  return jax.nn.logsumexp(logits, axis=-1)


def supervised_loss(logits_lab: jax.Array, labels: jax.Array) -> jax.Array:
  """-mean(l_y) + mean(LSE(l)): K-way cross-entropy (the K+1 model conditioned on 'real')."""
  l_y = jnp.take_along_axis(logits_lab, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  return -jnp.mean(l_y) + jnp.mean(log_sum_exp(logits_lab))


def unsupervised_loss(logits_unl: jax.Array, logits_gen: jax.Array) -> jax.Array:
  """0.5 E[-log D(x_unl)] + 0.5 E[-log(1 - D(G(z)))] with D = sigmoid(LSE(l))."""
  lse_unl = log_sum_exp(logits_unl)
  lse_gen = log_sum_exp(logits_gen)
  return (-0.5 * jnp.mean(lse_unl) + 0.5 * jnp.mean(jax.nn.softplus(lse_unl))
          + 0.5 * jnp.mean(jax.nn.softplus(lse_gen)))


def classification_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of examples whose argmax class differs from the label."""
  return jnp.mean((jnp.argmax(logits, axis=-1) != labels).astype(jnp.float32))


def discriminator_loss(logits_lab, labels, logits_unl, logits_gen, unlabeled_weight: float = 1.0):
  """loss_lab + unlabeled_weight * loss_unl, and a dict of (loss_lab, loss_unl, train_err)."""
  loss_lab = supervised_loss(logits_lab, labels)
  loss_unl = unsupervised_loss(logits_unl, logits_gen)
  aux = {"loss_lab": loss_lab, "loss_unl": loss_unl,
         "train_err": classification_error(logits_lab, labels)}
  return loss_lab + unlabeled_weight * loss_unl, aux
