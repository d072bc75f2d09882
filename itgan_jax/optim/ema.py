"""Polyak/EMA evaluation parameters (improved-gan `disc_param_avg`, "param averaging everywhere").

Official: a <- a + rate * (p - a) with rate 1e-4, a initialised at ZERO and never bias-corrected,
so early evaluations use shrunken parameters (papers.md A.4/A.5). Theano applies the update together
with the optimizer's, i.e. with the parameters from *before* the step: callers pass those.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ema_init(params: Any, zero_init: bool = True) -> Any:
  """Zeros like `params` (official) or a copy of `params` (`zero_init=False`)."""
  if zero_init:
    return jax.tree.map(jnp.zeros_like, params)
  return jax.tree.map(jnp.array, params)


def ema_update(ema: Any, params: Any, rate: float) -> Any:
  """ema + rate * (params - ema), leaf by leaf."""
  return jax.tree.map(lambda a, p: a + rate * (p - a), ema, params)


def ema_debiased(ema: Any, count: jax.Array, rate: float) -> Any:
  """Bias-corrected zero-initialised EMA: ema / (1 - (1 - rate)^count) (count >= 1 updates)."""
  # 1 - (1 - rate)^count computed as -expm1(count * log1p(-rate)): accurate in float32 for tiny
  # rates (1 - (1 - 1e-4) alone loses 3 significant digits).
  count = jnp.maximum(count, 1).astype(jnp.float32)
  correction = -jnp.expm1(count * jnp.log1p(-jnp.float32(rate)))
  return jax.tree.map(lambda a: a / correction, ema)
