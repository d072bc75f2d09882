"""The K+1 semi-supervised discriminator loss with a fixed zero fake logit (Salimans 2016, Sec. 5).

D outputs K class logits l; the (K+1)-th "generated" logit is fixed at 0, so with Z = sum_k exp(l_k):
p(y=k|x) = exp(l_k) / (Z + 1), D(x) = 1 - p(y=K+1|x) = Z / (Z + 1) = sigmoid(LSE(l)).
Official Theano form (improved-gan `train_*_feature_matching.py`, papers.md A.2):
  loss_lab = -mean(l_y) + mean(LSE(l_lab))
  loss_unl = -0.5 mean(LSE(l_unl)) + 0.5 mean(softplus(LSE(l_unl))) + 0.5 mean(softplus(LSE(l_gen)))
           = 0.5 E[-log D(x_unl)] + 0.5 E[-log(1 - D(G(z)))].
The first two terms are evaluated as 0.5 mean(softplus(-LSE(l_unl))) (softplus(x) - x =
softplus(-x)): the same value and gradient without the cancellation of two large numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_logits(name: str, logits: jax.Array) -> None:
  if logits.ndim != 2:
    raise ValueError(f"{name} must be (batch, num_classes) class logits, got shape {logits.shape}")


def log_sum_exp(logits: jax.Array, axis: int = -1) -> jax.Array:
  """Max-shifted log-sum-exp (official `nn.log_sum_exp`, axis 1 of (batch, K) logits)."""
  return jax.nn.logsumexp(logits, axis=axis)


def supervised_loss(logits_lab: jax.Array, labels: jax.Array) -> jax.Array:
  """-mean(l_y) + mean(LSE(l)): K-way cross-entropy, i.e. -log p(y | x, y <= K) of the K+1 model."""
  _check_logits("logits_lab", logits_lab)
  if labels.shape != logits_lab.shape[:1]:
    raise ValueError(f"labels must have shape {logits_lab.shape[:1]} (one int label per row of "
                     f"logits_lab), got {labels.shape}")
  l_y = jnp.take_along_axis(logits_lab, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  return -jnp.mean(l_y) + jnp.mean(log_sum_exp(logits_lab))


def unsupervised_loss(logits_unl: jax.Array, logits_gen: jax.Array) -> jax.Array:
  """0.5 E[-log D(x_unl)] + 0.5 E[-log(1 - D(G(z)))] with D = sigmoid(LSE(l)) (official loss_unl)."""
  _check_logits("logits_unl", logits_unl)
  _check_logits("logits_gen", logits_gen)
  lse_unl = log_sum_exp(logits_unl)
  lse_gen = log_sum_exp(logits_gen)
  return 0.5 * jnp.mean(jax.nn.softplus(-lse_unl)) + 0.5 * jnp.mean(jax.nn.softplus(lse_gen))


def classification_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of examples whose argmax class (first on ties, as Theano) differs from the label."""
  return jnp.mean((jnp.argmax(logits, axis=-1) != labels).astype(jnp.float32))


def discriminator_loss(logits_lab: jax.Array, labels: jax.Array, logits_unl: jax.Array,
                       logits_gen: jax.Array, unlabeled_weight: float = 1.0
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """loss_lab + unlabeled_weight * loss_unl, and {loss_lab, loss_unl, train_err} (official outputs
  of `train_batch_disc`)."""
  loss_lab = supervised_loss(logits_lab, labels)
  loss_unl = unsupervised_loss(logits_unl, logits_gen)
  aux = {"loss_lab": loss_lab, "loss_unl": loss_unl,
         "train_err": classification_error(logits_lab, labels)}
  return loss_lab + unlabeled_weight * loss_unl, aux
