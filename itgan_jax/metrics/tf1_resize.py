"""TensorFlow 1.x `tf.image.resize_bilinear(align_corners=False)` in JAX (papers.md A.6, D.4).

The Inception-score graph of `openai/improved-gan inception_score/model.py` feeds images at their
native size into `inception-2015-12-05`, whose first op is a TF1 `ResizeBilinear` to 299x299
(`align_corners=False`, and TF1 had no `half_pixel_centers`, i.e. it is False). torch-fidelity
re-implements this op (`interpolate_compat_tensorflow.py: interpolate_bilinear_2d_like_tensorflow1x`,
method 'slow') because `torch.nn.functional.interpolate` uses half-pixel centres. The TF kernel
(`tensorflow/core/kernels/image_resizer_state.h`, `resize_bilinear_op.cc`), all in float32:

  scale = float(in_size) / out_size
  src   = dst * scale                      (legacy scaler, no half-pixel offset)
  lo    = max(floor(src), 0);  hi = min(ceil(src), in_size - 1);  lerp = src - floor(src)
  top    = tl + (tr - tl) * x_lerp;  bottom = bl + (br - bl) * x_lerp
  out    = top + (bottom - top) * y_lerp

Output size 299 from 299 is the identity (scale 1, lerp 0). Eagerly the result is bit-identical to
the formula; under `jax.jit` XLA:CPU contracts `a + (b - a) * t` into a fused multiply-add, which
moves results by at most a few float32 ulps (measured <= 4.6e-5 on the [0, 255] scale), far below
the 1e-4 relative agreement of the network features.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def tf1_source_coordinates(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The (lo, hi, lerp) of TF1's `compute_interpolation_weights` for one axis, in float32.

  Returns int32 arrays `lo`, `hi` and float32 `lerp`, each of length `out_size`.
  """
  if in_size < 1 or out_size < 1:
    raise ValueError(f"resize sizes must be >= 1, got in_size={in_size}, out_size={out_size}")
  scale = np.float32(in_size) / np.float32(out_size)
  src = np.arange(out_size, dtype=np.float32) * scale
  src_floor = np.floor(src)
  lo = np.maximum(src_floor.astype(np.int64), 0)
  hi = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
  lerp = (src - src_floor).astype(np.float32)
  return lo.astype(np.int32), hi.astype(np.int32), lerp


def resize_bilinear_tf1(images: jax.Array, size: Sequence[int] = (299, 299)) -> jax.Array:
  """Bilinear resize of NHWC `images` to `size` = (height, width) exactly as TF1's
  `tf.image.resize_bilinear(images, size, align_corners=False)`.

  Works for up- and down-sampling (TF1 bilinear does not anti-alias). Any real or integer input
  dtype; the arithmetic and the result are float32 (as the TF kernel). Shapes are static, so the
  gather indices are computed with NumPy at trace time.
  """
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"resize_bilinear_tf1 expects NHWC images (4-D), got shape {images.shape}")
  if len(size) != 2:
    raise ValueError(f"size must be (height, width), got {size!r}")
  out_h, out_w = int(size[0]), int(size[1])
  _, in_h, in_w, _ = images.shape
  x = images.astype(jnp.float32)
  if (in_h, in_w) == (out_h, out_w):
    return x  # scale 1: src = dst exactly, lerp = 0 (the TF kernel returns the input).
  y_lo, y_hi, y_lerp = tf1_source_coordinates(in_h, out_h)
  x_lo, x_hi, x_lerp = tf1_source_coordinates(in_w, out_w)
  rows_lo = jnp.take(x, y_lo, axis=1)
  rows_hi = jnp.take(x, y_hi, axis=1)
  x_lerp = jnp.asarray(x_lerp)[None, None, :, None]
  y_lerp = jnp.asarray(y_lerp)[None, :, None, None]
  top_left = jnp.take(rows_lo, x_lo, axis=2)
  top_right = jnp.take(rows_lo, x_hi, axis=2)
  bottom_left = jnp.take(rows_hi, x_lo, axis=2)
  bottom_right = jnp.take(rows_hi, x_hi, axis=2)
  top = top_left + (top_right - top_left) * x_lerp
  bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
  return top + (bottom - top) * y_lerp
