"""Latent noise distributions of the three papers' generators."""

from __future__ import annotations

import jax
import jax.numpy as jnp

LATENT_DISTRIBUTIONS = ("uniform01", "uniform_pm1", "normal")


def sample_latent(rng: jax.Array, num: int, dim: int, dist: str = "uniform01") -> jax.Array:
  """Draws `num` latent vectors of size `dim`, float32.

  uniform01: U(0, 1), the Theano `theano_rng.uniform` default of the improved-gan MNIST/CIFAR/SVHN
  scripts (papers.md A.5 quirk 1). uniform_pm1: U(-1, 1) (improved-gan imagenet, RP-GAN).
  normal: N(0, I) (progressive GAN).
  """
  if dist == "uniform01":
    return jax.random.uniform(rng, (num, dim), jnp.float32)
  if dist == "uniform_pm1":
    return jax.random.uniform(rng, (num, dim), jnp.float32, -1.0, 1.0)
  if dist == "normal":
    return jax.random.normal(rng, (num, dim), jnp.float32)
  raise ValueError(f"unknown latent distribution {dist!r}; choose one of {LATENT_DISTRIBUTIONS}")
