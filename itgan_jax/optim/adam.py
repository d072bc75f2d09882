"""Adam as the official scripts use it (improved-gan `nn.py` `adam_updates`), built from optax.

Official step (t counted from 1): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
p <- p - lr * m_hat / sqrt(v_hat + 1e-8) with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t):
the epsilon sits *inside* the square root (standard Adam: m_hat / (sqrt(v_hat) + eps)). All
scripts call it with mom1 = b1 = 0.5, b2 = 0.999. optax's `scale_by_adam(eps=0, eps_root=1e-8)`
computes exactly m_hat / (sqrt(v_hat + eps_root) + 0).
"""

from __future__ import annotations

from typing import Callable

import jax
import optax

LearningRate = float | Callable[[jax.Array], jax.Array]


def _check(b1: float, b2: float, eps: float) -> None:
  if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
    raise ValueError(f"Adam needs 0 <= b1, b2 < 1, got b1={b1}, b2={b2}")
  if eps < 0:
    raise ValueError(f"Adam epsilon must be >= 0, got {eps}")


def make_adam(learning_rate: LearningRate | None, b1: float = 0.5, b2: float = 0.999,
              eps: float = 1e-8, eps_inside_sqrt: bool = True) -> optax.GradientTransformation:
  """Adam with eps inside the sqrt (official) or outside (standard, `eps_inside_sqrt=False`).

  `learning_rate`: a float or an optax schedule `count -> lr`; the result then gives ready-to-add
  updates (-lr * direction, use `optax.apply_updates`). `None` returns the unscaled, positive
  Adam direction only, for callers that apply `p - lr * u` with their own per-epoch rate.
  """
  _check(b1, b2, eps)
  if eps_inside_sqrt:
    direction = optax.scale_by_adam(b1=b1, b2=b2, eps=0.0, eps_root=eps)
  else:
    direction = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)
  if learning_rate is None:
    return direction
  if callable(learning_rate):
    return optax.chain(direction, optax.scale_by_schedule(lambda count: -learning_rate(count)))
  return optax.chain(direction, optax.scale(-learning_rate))


def official_adam(learning_rate: LearningRate | None, b1: float = 0.5, b2: float = 0.999,
                  eps_root: float = 1e-8) -> optax.GradientTransformation:
  """Official `adam_updates(..., mom1=0.5)`: step = lr * m_hat / sqrt(v_hat + 1e-8)."""
  return make_adam(learning_rate, b1=b1, b2=b2, eps=eps_root, eps_inside_sqrt=True)
