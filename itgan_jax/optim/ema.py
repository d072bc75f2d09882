"""Polyak/EMA evaluation parameters (improved-gan `disc_param_avg`, "param averaging everywhere").

Official: a <- a + rate * (p - a) with rate 1e-4 over D's *trainable* parameters, a initialised at
ZERO and never bias-corrected, so early evaluations use shrunken parameters (papers.md A.4/A.5).
Theano applies this update simultaneously with the optimiser's, so p is the parameter value from
*before* the step: callers pass the pre-step params. Frozen weight-norm scales are not averaged
(they are not trainable officially either) and are used as they are at evaluation.
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


def ema_update(ema: Any, params: Any, rate: float = 1e-4) -> Any:
  """ema + rate * (params - ema), leaf by leaf; `params` are the pre-step parameters."""
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f"EMA rate must be in [0, 1], got {rate}")
  return jax.tree.map(lambda a, p: a + rate * (p - a), ema, params)


def ema_debiased(ema: Any, count: jax.Array, rate: float = 1e-4) -> Any:
  """Bias-corrected zero-initialised EMA: ema / (1 - (1 - rate)^count) (not official).

  `count` is the number of `ema_update` calls (values < 1 are treated as 1; the EMA is still 0).
  """
  if not 0.0 < rate <= 1.0:
    raise ValueError(f"EMA debiasing needs a rate in (0, 1], got {rate}")
  # 1 - (1 - rate)^count as -expm1(count * log1p(-rate)): accurate in float32 for tiny rates
  # (1 - (1 - 1e-4) alone loses 3 significant digits).
  count = jnp.maximum(jnp.asarray(count), 1).astype(jnp.float32)
  correction = -jnp.expm1(count * jnp.log1p(-jnp.float32(rate)))
  return jax.tree.map(lambda a: a / correction, ema)
