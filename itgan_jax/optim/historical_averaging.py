"""Historical averaging (Salimans et al. 2016, Sec. 3.3) as an optax GradientTransformation.

Each player's cost gains lambda * ||theta - (1/t) sum_{i<=t} theta[i]||^2, where theta[i] is the
parameter value at past time i. The past values are constants (they are not functions of the current
parameters), so the added gradient is

  include_current=False:  2 lambda (theta_t - m_{t-1}),      m_{t-1} = mean of theta_1..theta_{t-1}
  include_current=True:   2 lambda ((t-1)/t)^2 (theta_t - m_{t-1})
                          (the mean includes theta_t with weight 1/t, as the paper's sum i <= t)

and no term at the first step of the exclusive reading (no history yet). The official code has no
implementation (openai/improved-gan#45); torchgan keeps a running sum of past parameters, i.e. the
exclusive reading, which is our default. Put it first in `optax.chain` so it acts like a loss term.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class HistoricalAveragingState(NamedTuple):
  count: jax.Array  # number of parameter values averaged into `mean`
  mean: Any         # running mean of theta_1 .. theta_count


def historical_averaging(weight: float, include_current: bool = False
                         ) -> optax.GradientTransformation:
  """Adds the gradient of weight * ||theta - historical mean||^2 to the updates (needs params)."""
  if weight < 0:
    raise ValueError(f"historical averaging weight must be >= 0, got {weight}")

  def init_fn(params):
    return HistoricalAveragingState(jnp.zeros([], jnp.int32),
                                    jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("historical_averaging needs the current parameters: call "
                       "tx.update(grads, state, params)")
    t = state.count + 1  # index of the current parameter value theta_t
    if include_current:
      factor = jnp.square((t - 1).astype(jnp.float32) / t.astype(jnp.float32))
    else:
      factor = jnp.where(state.count > 0, 1.0, 0.0)
    updates = jax.tree.map(lambda g, p, m: g + (2.0 * weight * factor * (p - m)).astype(g.dtype),
                           updates, params, state.mean)
    new_mean = jax.tree.map(lambda m, p: m + (p - m) / t.astype(m.dtype), state.mean, params)
    return updates, HistoricalAveragingState(t, new_mean)

  return optax.GradientTransformation(init_fn, update_fn)
