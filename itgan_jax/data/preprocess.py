"""Pixel scalings of the official scripts (work on NumPy and JAX arrays alike, also under jit).

  'unit'           x / 255                 MNIST (G output is a sigmoid; mnist.npz is in [0, 1])
  'cifar_official' (x - 127.5) / 128       openai/improved-gan train_cifar_*.py
  'svhn_official'  (x - 127.5) / 127.5     openai/improved-gan train_svhn_*.py
  'tanh'           x / 127.5 - 1           [-1, 1] (ProGAN / RP-GAN style)
"""

from __future__ import annotations

import numpy as np

# name -> (offset, divisor): x_float = (x_uint8 - offset) / divisor
SCALES = {
    "unit": (0.0, 255.0),
    "cifar_official": (127.5, 128.0),
    "svhn_official": (127.5, 127.5),
    "tanh": (127.5, 127.5),
}


def _scale(name: str) -> tuple[float, float]:
  if name not in SCALES:
    raise ValueError(f"data.scale={name!r} is not one of {sorted(SCALES)}")
  return SCALES[name]


def value_range(scale: str) -> tuple[float, float]:
  """The float values that uint8 0 and 255 map to under `scale`."""
  offset, divisor = _scale(scale)
  return (0.0 - offset) / divisor, (255.0 - offset) / divisor


def to_float(x, scale: str):
  """uint8 images -> float32 in the model's range (NumPy in, NumPy out; JAX in, JAX out)."""
  offset, divisor = _scale(scale)
  if x.dtype != np.uint8:
    raise TypeError(f"to_float expects uint8 images, got {x.dtype}")
  return (x.astype(np.float32) - np.float32(offset)) / np.float32(divisor)


def to_uint8(x, scale: str) -> np.ndarray:
  """Model-range floats -> uint8 NumPy images (rounded, clipped): inverse of to_float."""
  offset, divisor = _scale(scale)
  return np.clip(np.rint(np.asarray(x, np.float64) * divisor + offset), 0, 255).astype(np.uint8)
