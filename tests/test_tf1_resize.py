"""TF1 bilinear resize vs an independent per-pixel NumPy loop of the TF1 kernel formula."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from itgan_jax.metrics.tf1_resize import resize_bilinear_tf1, tf1_source_coordinates


def _reference_resize(images: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """TF1 ResizeBilinear(align_corners=False), one output pixel at a time, float32 throughout.

  Written from `resize_bilinear_op.cc` (legacy scaler src = dst * in/out) in the torch-fidelity
  'slow' variant: neighbours floor(src) and floor(src)+1 clamped to the last row/column.
  """
  n, in_h, in_w, c = images.shape
  img = images.astype(np.float32)
  sy = np.float32(in_h) / np.float32(out_h)
  sx = np.float32(in_w) / np.float32(out_w)
  out = np.zeros((n, out_h, out_w, c), np.float32)
  for oy in range(out_h):
    fy = np.float32(oy) * sy
    y0 = int(fy)
    y1 = min(y0 + 1, in_h - 1)
    dy = np.float32(fy - np.float32(y0))
    for ox in range(out_w):
      fx = np.float32(ox) * sx
      x0 = int(fx)
      x1 = min(x0 + 1, in_w - 1)
      dx = np.float32(fx - np.float32(x0))
      a, b = img[:, y0, x0], img[:, y0, x1]
      cc, d = img[:, y1, x0], img[:, y1, x1]
      top = a + (b - a) * dx
      bot = cc + (d - cc) * dx
      out[:, oy, ox] = top + (bot - top) * dy
  return out


@pytest.mark.parametrize("in_h,in_w", [(28, 28), (32, 32), (64, 64), (299, 299), (17, 40)])
def test_resize_matches_reference_loop(in_h, in_w):
  rng = np.random.default_rng(in_h * 1000 + in_w)
  images = rng.integers(0, 256, size=(2, in_h, in_w, 3), dtype=np.uint8)
  got = np.asarray(jax.jit(resize_bilinear_tf1, static_argnums=1)(images, (299, 299)))
  chex.assert_shape(got, (2, 299, 299, 3))
  assert got.dtype == np.float32
  want = _reference_resize(images, 299, 299)
  # The TF1 formula in float32; XLA's FMA contraction under jit moves a few ulps (|x| <= 255).
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
  if (in_h, in_w) == (299, 299):
    np.testing.assert_array_equal(got, images.astype(np.float32))


def test_downsample_matches_reference_loop():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(1, 50, 37, 2)).astype(np.float32)
  got = np.asarray(resize_bilinear_tf1(images, (13, 29)))
  np.testing.assert_allclose(got, _reference_resize(images, 13, 29), rtol=0, atol=1e-6)


def test_not_half_pixel_centers():
  """TF1 legacy scaler: output pixel 0 samples input pixel 0 exactly; half-pixel would blend."""
  img = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1) * 10.0
  got = np.asarray(resize_bilinear_tf1(img, (1, 8)))[0, 0, :, 0]
  # src = dst * 0.5 -> 0, .5, 1, 1.5, 2, 2.5, 3, 3.5 (last two clamped to pixel 3).
  np.testing.assert_allclose(got, [0, 5, 10, 15, 20, 25, 30, 30], atol=1e-6)


def test_source_coordinates_clamped():
  lo, hi, lerp = tf1_source_coordinates(32, 299)
  assert lo.min() == 0 and hi.max() == 31 and lo.max() == 31
  assert np.all((lerp >= 0) & (lerp < 1))
  assert np.all(hi - lo <= 1)


def test_bad_input_raises():
  with pytest.raises(ValueError, match="NHWC"):
    resize_bilinear_tf1(np.zeros((4, 4, 3), np.uint8), (299, 299))
  with pytest.raises(ValueError, match="height, width"):
    resize_bilinear_tf1(np.zeros((1, 4, 4, 3), np.uint8), (299,))
