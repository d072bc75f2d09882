"""The training state: one pytree that jit, sharding and orbax all see the same way."""

from __future__ import annotations

from typing import Any

import flax
import flax.struct
import jax


@flax.struct.dataclass
class Player:
  """One network of the game (generator or discriminator) and everything that changes with it.

  Attributes:
    params: trainable parameters (flax collection `params`); the only leaves the optimizer updates.
    constants: the other flax collections, e.g. `frozen` (weight-norm scales fixed after
      data-dependent init) or `vbn_ref` (virtual-batch-norm reference inputs).
    opt_state: optax state of this player's optimizer.
    ema: Polyak/EMA average of `params` used for evaluation, or None.
  """
  params: Any
  constants: Any
  opt_state: Any
  ema: Any = None

  def variables(self, use_ema: bool = False) -> dict:
    """The flax variable dict for `module.apply`, with the EMA parameters if asked."""
    params = self.ema if use_ema else self.params
    return {"params": params, **self.constants}


@flax.struct.dataclass
class TrainState:
  """State of a two-player training run.

  Attributes:
    step: number of completed training iterations (one D update plus its G updates).
    rng: base PRNG key; iteration `t` uses `fold_in(rng, t)`, so any step's randomness is a
      function of (seed, t) alone and a resumed run replays exactly the same noise.
    g: generator player.
    d: discriminator player.
  """
  step: jax.Array
  rng: jax.Array
  g: Player
  d: Player
