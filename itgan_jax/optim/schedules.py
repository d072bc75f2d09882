"""Learning-rate schedules of the official scripts: a rate per EPOCH, constant within the epoch.

`linear_decay` (per epoch): lr(epoch) = base * min(max((end - epoch) / (end - start), 0), 1): flat
until `start`, then linear to 0 at `end`. The CIFAR scripts' `3e-4 * min(3 - epoch/400, 1)`
(epochs 0..1199) is start=800, end=1200; SVHN's `min(3 - epoch/300, 1)` is start=600, end=900
(papers.md A.3). The values are tabulated per integer epoch in float64 in the official operation
order, base * min(end/(end - start) - epoch/(end - start), 1), and cast to float32 like the
official `np.cast[floatX]`, so they equal the official rates bit for bit (the clip at 0 only acts
after `end`, which the official loops never reach).

Per-step forms (`step -> lr`, e.g. for optax) use the integer epoch = step // steps_per_epoch:
`official_linear_decay(base_lr, start_epoch, end_epoch, steps_per_epoch)`, or
`make_schedule(name, base_lr=..., steps_per_epoch=...)`. Without `steps_per_epoch`,
`make_schedule` returns the per-epoch function the training loop calls with its own epoch.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Schedule = Callable[[jax.Array], jax.Array]
SCHEDULES = ("constant", "linear_decay", "official_linear_decay")
_MAX_TABLE = 1_000_000  # beyond this many epochs fall back to float32 arithmetic


def constant(lr: float) -> Schedule:
  """`step (or epoch) -> lr`, the same rate everywhere (official MNIST: 0.003)."""
  value = np.float32(lr)
  return lambda _: jnp.asarray(value, jnp.float32)


def _linear_decay_table(base_lr: float, start_epoch: int, end_epoch: int) -> np.ndarray:
  span = float(end_epoch - start_epoch)
  epochs = np.arange(end_epoch + 1, dtype=np.float64)
  frac = np.minimum(end_epoch / span - epochs / span, 1.0)
  return (base_lr * np.maximum(frac, 0.0)).astype(np.float32)


def linear_decay(base_lr: float, start_epoch: int, end_epoch: int) -> Schedule:
  """`epoch -> lr`: base * min(max((end - epoch) / (end - start), 0), 1) for integer epochs."""
  if not 0 <= start_epoch < end_epoch:
    raise ValueError(f"linear_decay needs 0 <= start_epoch < end_epoch, got start_epoch="
                     f"{start_epoch}, end_epoch={end_epoch}")
  if end_epoch > _MAX_TABLE:
    def schedule(epoch):
      frac = (end_epoch - jnp.floor(jnp.asarray(epoch, jnp.float32))) / (end_epoch - start_epoch)
      return base_lr * jnp.clip(frac, 0.0, 1.0)
    return schedule
  table = _linear_decay_table(base_lr, start_epoch, end_epoch)

  def schedule(epoch):
    epoch = jnp.asarray(epoch)
    if not jnp.issubdtype(epoch.dtype, jnp.integer):
      epoch = jnp.floor(epoch)
    return jnp.asarray(table)[jnp.clip(epoch, 0, end_epoch).astype(jnp.int32)]
  return schedule


def per_step(epoch_schedule: Schedule, steps_per_epoch: int) -> Schedule:
  """`step -> epoch_schedule(step // steps_per_epoch)`: constant within each epoch."""
  if int(steps_per_epoch) < 1:
    raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
  spe = int(steps_per_epoch)
  return lambda step: epoch_schedule(jnp.asarray(step) // spe)


def official_linear_decay(base_lr: float, start_epoch: int, end_epoch: int,
                          steps_per_epoch: int) -> Schedule:
  """`step -> lr` of the CIFAR/SVHN scripts: linear_decay at the integer epoch step // spe."""
  return per_step(linear_decay(base_lr, start_epoch, end_epoch), steps_per_epoch)


def make_schedule(name: str, base_lr: float, steps_per_epoch: int | None = None,
                  **kwargs) -> Schedule:
  """Schedule for config `optim.schedule` (arguments from `optim.schedule_kwargs`).

  Returns `epoch -> lr` when `steps_per_epoch` is None (the loop passes the epoch), else
  `step -> lr`. 'official_linear_decay' is an alias of 'linear_decay'.
  """
  if name == "constant":
    if kwargs:
      raise ValueError(f"schedule 'constant' takes no arguments, got {sorted(kwargs)}")
    epoch_fn = constant(base_lr)
  elif name in ("linear_decay", "official_linear_decay"):
    if set(kwargs) != {"start_epoch", "end_epoch"}:
      raise ValueError(f"schedule {name!r} needs exactly optim.schedule_kwargs.start_epoch and "
                       f".end_epoch, got {sorted(kwargs)}")
    epoch_fn = linear_decay(base_lr, **kwargs)
  else:
    raise ValueError(f"optim.schedule={name!r} is not one of {SCHEDULES}")
  return epoch_fn if steps_per_epoch is None else per_step(epoch_fn, steps_per_epoch)
