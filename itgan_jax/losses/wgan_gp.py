"""WGAN-GP with ProGAN's target gamma and drift term (papers.md B.4).

  L_D = E[D(G(z))] - E[D(x)] + lambda E[(||grad_xhat D(xhat)||_2 - gamma)^2] / gamma^2
        + eps_drift E[D(x)^2],      xhat = x + u (G(z) - x), u ~ U(0, 1) one per sample,
  L_G = -E[D(G(z))].

Official behaviour kept (next_features.md 7.5): the gradient is that of the *summed* D scores over
the batch (so with minibatch stddev, cross-sample terms enter the penalty), and the interpolation
factor is one scalar per sample, never per pixel. Defaults: lambda 10, eps_drift 0.001, gamma 1
(CelebA/LSUN) or 750 (the Theano CIFAR-10 config).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def interpolate(x_real: jax.Array, x_fake: jax.Array, u: jax.Array) -> jax.Array:
  """xhat = x + u (G(z) - x) with `u` of shape (N,): one factor per sample."""
  if u.shape != x_real.shape[:1]:
    raise ValueError(f"the interpolation factor must be one per sample, shape {x_real.shape[:1]}, "
                     f"got {u.shape}")
  return x_real + u.reshape((-1,) + (1,) * (x_real.ndim - 1)) * (x_fake - x_real)


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], x_hat: jax.Array,
                     gamma: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """E[(||grad D(xhat)|| - gamma)^2] / gamma^2 and the per-sample gradient norms.

  Args:
    critic: x (N, ...) -> scores (N,).
    x_hat: the interpolated batch.
    gamma: the target norm (ProGAN `iwass_target`).
  Returns:
    (penalty scalar, norms (N,)).
  """
  if gamma <= 0:
    raise ValueError(f"loss.gp_target={gamma} must be > 0 (1 = WGAN-GP; ProGAN CIFAR: 750)")
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))
  return jnp.mean(jnp.square(norms - gamma)) / gamma ** 2, norms


def discriminator_loss(critic: Callable[[jax.Array], jax.Array], x_real: jax.Array,
                       x_fake: jax.Array, u: jax.Array, *, gamma: float = 1.0,
                       gp_weight: float = 10.0, drift: float = 0.001
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L_D above; D is called separately on the real, fake and interpolated batches (as the
  official code), so minibatch statistics stay within each batch.

  Args:
    critic: x -> scores (N,), D with its parameters bound.
    x_real, x_fake: same-shape batches (x_fake without gradient to G).
    u: (N,) interpolation factors in [0, 1).
    gamma, gp_weight, drift: the target norm, lambda and eps_drift.
  Returns:
    (loss, {'d_real', 'd_fake', 'gp', 'grad_norm', 'wdist'}) with wdist = E D(x) - E D(G(z)).
  """
  d_real = critic(x_real)
  d_fake = critic(x_fake)
  gp, norms = gradient_penalty(critic, interpolate(x_real, x_fake, u), gamma)
  wdist = jnp.mean(d_real) - jnp.mean(d_fake)
  loss = -wdist + gp_weight * gp + drift * jnp.mean(jnp.square(d_real))
  return loss, dict(d_real=jnp.mean(d_real), d_fake=jnp.mean(d_fake), gp=gp,
                    grad_norm=jnp.mean(norms), wdist=wdist)


def generator_loss(d_fake: jax.Array) -> jax.Array:
  """L_G = -E[D(G(z))]."""
  return -jnp.mean(d_fake)
