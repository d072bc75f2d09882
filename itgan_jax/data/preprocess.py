"""Pixel scalings of the official scripts (work on NumPy and JAX arrays alike)."""

from __future__ import annotations

import numpy as np

# name -> (offset, divisor): x_float = (x_uint8 - offset) / divisor
SCALES = {
    "unit": (0.0, 255.0),              # MNIST: G output is a sigmoid
    "cifar_official": (127.5, 128.0),  # train_cifar_*.py
    "svhn_official": (127.5, 127.5),   # train_svhn_*.py
    "tanh": (127.5, 127.5),            # [-1, 1]
}


def _scale(name: str) -> tuple[float, float]:
  if name not in SCALES:
    raise ValueError(f"data.scale={name!r} is not one of {sorted(SCALES)}")
  return SCALES[name]


def to_float(x, scale: str):
  """uint8 images -> float32 model range."""
  offset, divisor = _scale(scale)
  return (x.astype(np.float32) - offset) / divisor


def to_uint8(x, scale: str) -> np.ndarray:
  """Model-range floats -> uint8 images (rounded, clipped), for sample grids and metrics."""
  offset, divisor = _scale(scale)
  return np.clip(np.rint(np.asarray(x, np.float64) * divisor + offset), 0, 255).astype(np.uint8)
