"""Learning-rate schedules of the official scripts, as functions of the integer epoch.

`linear_decay`: lr = base * min(max((end - epoch) / (end - start), 0), 1): flat until `start`, then
linearly to 0 at `end`. The CIFAR scripts' `3e-4 * min(3 - epoch/400, 1)` is start=800, end=1200;
SVHN's `min(3 - epoch/300, 1)` is start=600, end=900 (papers.md A.3). The official code evaluates it
once per epoch, so the rate is constant within an epoch.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

SCHEDULES = ("constant", "linear_decay")


def constant(base_lr: float) -> Callable:
  return lambda epoch: jnp.asarray(base_lr, jnp.float32)


def linear_decay(base_lr: float, start_epoch: int, end_epoch: int) -> Callable:
  if not 0 <= start_epoch < end_epoch:
    raise ValueError(f"linear_decay needs 0 <= start_epoch < end_epoch, got {start_epoch}, "
                     f"{end_epoch}")

  def schedule(epoch):
    frac = (end_epoch - jnp.asarray(epoch, jnp.float32)) / (end_epoch - start_epoch)
    return base_lr * jnp.clip(frac, 0.0, 1.0)
  return schedule


def make_schedule(name: str, base_lr: float, **kwargs) -> Callable:
  """`epoch -> lr` for config `optim.schedule` (with `optim.schedule_kwargs`)."""
  if name == "constant":
    if kwargs:
      raise ValueError(f"schedule 'constant' takes no arguments, got {sorted(kwargs)}")
    return constant(base_lr)
  if name == "linear_decay":
    try:
      return linear_decay(base_lr, **kwargs)
    except TypeError:
      raise ValueError("schedule 'linear_decay' needs optim.schedule_kwargs.start_epoch and "
                       f".end_epoch, got {sorted(kwargs)}") from None
  raise ValueError(f"optim.schedule={name!r} is not one of {SCHEDULES}")
