"""Historical averaging against autodiff of the explicit penalty over a history of parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from itgan_jax.optim.historical_averaging import historical_averaging


@pytest.mark.parametrize("include_current", [False, True])
def test_added_gradient_equals_autodiff_of_explicit_penalty(include_current):
  weight = 0.3
  tx = historical_averaging(weight, include_current=include_current)
  rng = np.random.RandomState(0)
  history = []
  params = {"a": jnp.asarray(rng.randn(3), jnp.float32), "b": jnp.asarray(rng.randn(2, 2),
                                                                           jnp.float32)}
  state = tx.init(params)
  for _ in range(5):
    zero = jax.tree.map(jnp.zeros_like, params)
    added, state = tx.update(zero, state, params)

    def penalty(p, past=tuple(history)):
      # The paper's term with past values as constants; the current value enters the mean too
      # when include_current.
      values = list(past) + ([p] if include_current else [])
      if not values:
        return 0.0
      mean = jax.tree.map(lambda *xs: sum(xs) / len(xs), *values)
      return weight * sum(jnp.sum((x - m) ** 2) for x, m in
                          zip(jax.tree.leaves(p), jax.tree.leaves(mean)))

    expected = jax.grad(penalty)(params)
    for a, b in zip(jax.tree.leaves(added), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    history.append(jax.tree.map(np.asarray, params))
    params = jax.tree.map(lambda p: p + jnp.asarray(rng.randn(*p.shape), jnp.float32), params)


def test_chains_with_adam_and_requires_params():
  tx = optax.chain(historical_averaging(1e-2), optax.adam(1e-3, b1=0.5))
  params = {"w": jnp.ones(4)}
  state = tx.init(params)
  updates, state = tx.update({"w": jnp.ones(4)}, state, params)
  assert np.all(np.isfinite(updates["w"]))
  with pytest.raises(ValueError, match="needs the current parameters"):
    historical_averaging(1.0).update({"w": jnp.ones(4)}, historical_averaging(1.0).init(params))
  with pytest.raises(ValueError, match=">= 0"):
    historical_averaging(-1.0)


def test_reachable_from_config_for_each_player_independently():
  from itgan_jax.optim import factory
  from itgan_jax.optim.historical_averaging import HistoricalAveragingState
  from tests.helpers import load_config
  config = load_config("mnist_ssl", None, **{"optim.historical_averaging_d": 1e-3})
  params = {"w": jnp.ones(3)}
  d_state = factory.build_optimizer(config.optim, config.optim.historical_averaging_d).init(
      params)
  g_state = factory.build_optimizer(config.optim, config.optim.historical_averaging_g).init(
      params)
  assert isinstance(d_state[0], HistoricalAveragingState)
  assert not any(isinstance(s, HistoricalAveragingState) for s in jax.tree.leaves(
      g_state, is_leaf=lambda x: isinstance(x, HistoricalAveragingState)))
