"""Player mechanics every variant shares: initialise a player, apply an update, average it.

A `state.Player` holds one network's parameters, its other flax collections, its optimizer state
and, optionally, an EMA (Polyak) copy of its parameters. The official Theano scripts apply all
updates of one function call simultaneously, so an EMA update reads the parameters from *before*
the step's optimizer update (`update_ema(new_player, old_params, rate)`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax

from itgan_jax.optim import ema as ema_lib
from itgan_jax.train.state import Player


def split_variables(variables: dict) -> tuple[Any, dict]:
  """flax variables -> (the `params` collection, the other collections)."""
  variables = dict(variables)
  return variables.pop("params"), variables


def init_player(module: nn.Module, rngs: dict[str, jax.Array], inputs: jax.Array,
                tx: optax.GradientTransformation, *, ema: str | None = None, **kwargs) -> Player:
  """Initialises `module` on `inputs` (data-dependent init passes run here) and its optimizer.

  Args:
    module: the flax network.
    rngs: flax PRNG streams for `module.init` ('params', 'noise', ...).
    inputs: the batch the init pass sees.
    tx: the player's optimizer (see `optim.factory.build_optimizer`).
    ema: None (no EMA), 'zeros' (official zero-initialised average) or 'copy' (starts at params).
    **kwargs: passed to `module.init` (e.g. train=True).
  Returns:
    The `Player`.
  """
  params, constants = split_variables(module.init(rngs, inputs, **kwargs))
  if ema not in (None, "zeros", "copy"):
    raise ValueError(f"ema={ema!r} must be None, 'zeros' or 'copy'")
  average = None if ema is None else ema_lib.ema_init(params, zero_init=ema == "zeros")
  return Player(params, constants, tx.init(params), average)


def apply_updates(player: Player, tx: optax.GradientTransformation, grads: Any,
                  lr: jax.Array) -> Player:
  """p <- p - lr * u with u = tx's update of `grads` (the learning rate applied outside tx)."""
  updates, opt_state = tx.update(grads, player.opt_state, player.params)
  params = jax.tree.map(lambda p, u: p - lr * u, player.params, updates)
  return player.replace(params=params, opt_state=opt_state)


def update_ema(player: Player, params_before: Any, rate: float) -> Player:
  """The player's EMA moved toward `params_before` (the pre-update parameters, as Theano):
  a <- a + rate * (p_old - a). A player without EMA is returned unchanged."""
  if player.ema is None:
    return player
  return player.replace(ema=ema_lib.ema_update(player.ema, params_before, rate))


def step(player: Player, tx: optax.GradientTransformation, grads: Any, lr: jax.Array,
         ema_rate: float = 0.0) -> Player:
  """One optimizer update, then the EMA with the pre-update parameters (if the player has one)."""
  new = apply_updates(player, tx, grads, lr)
  return update_ema(new, player.params, ema_rate) if ema_rate else new


def evaluation_params(player: Player, use_ema: bool, *, step_count: jax.Array | None = None,
                      ema_rate: float = 0.0, debias: bool = False) -> Any:
  """The parameters to evaluate: the EMA when asked and present (bias-corrected if `debias`),
  else the raw parameters."""
  if not use_ema or player.ema is None:
    return player.params
  if debias:
    return ema_lib.ema_debiased(player.ema, step_count, ema_rate)
  return player.ema
