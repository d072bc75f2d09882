"""GAN objectives on D's "real" logit d = logit D(x), with one-sided label smoothing.

For the K+1 semi-supervised D, d = LSE(class logits) (the fake logit is fixed at 0); for the
ImageNet D, d = LSE(class logits) - fake logit (papers.md A.2, A.7).

- `discriminator_gan_loss`: sigmoid cross-entropy with real target alpha and fake target 0 (one-sided
  label smoothing, Salimans 2016 Sec. 3.4), minus the targets' entropy as the imagenet code does, so
  the loss is a KL divergence whose minimum is 0. With alpha = 1 it equals the K+1 code's
  0.5 [-log D(x)] + 0.5 [-log(1 - D(G(z)))] up to the factor 2 convention used here: each term is
  averaged over its batch and the two are averaged (as `losses.ssl.unsupervised_loss`).
- `generator_loss`:
  'minimax'        log(1 - D(G(z))) = -softplus(d): the official minibatch-discrimination scripts
                   (`loss_gen = -mean(softplus(LSE(gen)))`), the saturating loss;
  'non_saturating' -log D(G(z)) = softplus(-d);
  'kl_target'      KL(target || D(G(z))) with target = alpha/2 (imagenet `generator_target_prob`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

GENERATOR_KINDS = ("minimax", "non_saturating", "kl_target")


def _check_prob(name: str, p: float) -> None:
  if not 0.0 < p <= 1.0:
    raise ValueError(f"{name}={p} must be in (0, 1] (1.0 = no smoothing; the imagenet code uses "
                     "a real target of 0.75 and a generator target of 0.375)")


def check_label_smoothing(alpha: float) -> None:
  """Raises a clear ValueError unless the real target alpha is in (0, 1]."""
  _check_prob("loss.label_smoothing (real target)", alpha)


def _bernoulli_kl_from_logit(target: float, logit: jax.Array) -> jax.Array:
  """KL(Bernoulli(target) || Bernoulli(sigmoid(logit))) = cross-entropy - entropy(target)."""
  cross_entropy = target * jax.nn.softplus(-logit) + (1.0 - target) * jax.nn.softplus(logit)
  t = jnp.clip(jnp.asarray(target, jnp.float32), 1e-12, 1.0)
  entropy = -(t * jnp.log(t) + jnp.where(t < 1.0, (1.0 - t) * jnp.log1p(-t), 0.0))
  return cross_entropy - entropy


def discriminator_gan_loss(d_real: jax.Array, d_fake: jax.Array, real_target: float = 1.0
                           ) -> jax.Array:
  """0.5 E[KL(alpha || D(x))] + 0.5 E[KL(0 || D(G(z)))]: one-sided label smoothing."""
  _check_prob("loss.label_smoothing (real target)", real_target)
  return (0.5 * jnp.mean(_bernoulli_kl_from_logit(real_target, d_real))
          + 0.5 * jnp.mean(jax.nn.softplus(d_fake)))


def generator_loss(d_fake: jax.Array, kind: str = "non_saturating", target: float = 0.375
                   ) -> jax.Array:
  """The generator's objective on generated samples' real-logits (see module docstring)."""
  if kind == "minimax":
    return -jnp.mean(jax.nn.softplus(d_fake))
  if kind == "non_saturating":
    return jnp.mean(jax.nn.softplus(-d_fake))
  if kind == "kl_target":
    _check_prob("kl target", target)
    return jnp.mean(_bernoulli_kl_from_logit(target, d_fake))
  raise ValueError(f"loss.generator={kind!r} is not one of {GENERATOR_KINDS} (or "
                   "'feature_matching' in the semi-supervised variant)")


def make_generator_loss(kind: str, target: float = 0.375) -> Callable[[jax.Array], jax.Array]:
  """`d_fake -> loss` for `kind`, validated now (unknown kind, target outside (0, 1])."""
  if kind not in GENERATOR_KINDS:
    generator_loss(jnp.zeros(()), kind)  # raises the message naming the valid kinds
  if kind == "kl_target":
    _check_prob("loss.kl_target (generator target probability)", target)
  return lambda d_fake: generator_loss(d_fake, kind, target)
