"""Each player's optimizer and learning-rate schedule from the `config.optim` block (one place).

The optimizer is built *without* the learning rate: the variants multiply its direction by the
epoch's rate, `p <- p - lr(epoch) * u`, as the official scripts do with their per-epoch
`lr` shared variable. Adam is `adam.make_adam(None, ...)` (official: eps inside the sqrt);
historical averaging, when its weight is > 0, comes first in the chain so that it acts like a term
of the loss (`historical_averaging.py`).
"""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections
import optax

from itgan_jax.optim import adam
from itgan_jax.optim import schedules
from itgan_jax.optim import historical_averaging as ha_lib


def build_optimizer(optim: ml_collections.ConfigDict, historical_weight: float = 0.0
                    ) -> optax.GradientTransformation:
  """Adam direction of `optim` (b1, b2, eps, eps_inside_sqrt), after historical averaging.

  Args:
    optim: the `config.optim` block.
    historical_weight: lambda of historical averaging (0 = off), e.g. `optim.historical_averaging_d`.
  Returns:
    A transformation whose updates are the positive Adam direction (scale by -lr to apply).
  """
  if historical_weight < 0:
    raise ValueError(f"historical averaging weight {historical_weight} must be >= 0 (0 = off)")
  direction = adam.make_adam(None, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                             eps_inside_sqrt=optim.eps_inside_sqrt)
  if historical_weight:
    include_current = bool(optim.get("historical_averaging_include_current", False))
    return optax.chain(ha_lib.historical_averaging(historical_weight, include_current=include_current),
                       direction)
  return direction


def build_lr_schedule(optim: ml_collections.ConfigDict) -> Callable[[jax.Array], jax.Array]:
  """Learning rate as a function of the (integer, 0-based) epoch: `optim.schedule` of `optim.lr`."""
  if optim.lr < 0:
    raise ValueError(f"optim.lr={optim.lr} must be >= 0")
  return schedules.make_schedule(optim.schedule, base_lr=optim.lr, **dict(optim.schedule_kwargs))
