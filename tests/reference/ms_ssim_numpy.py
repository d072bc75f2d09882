"""NumPy/SciPy re-derivation of MS-SSIM as in `tkarras/progressive_growing_of_gans metrics/ms_ssim.py`.

Wang et al. 2003 (papers.md B.6): NHWC images, Gaussian window (size min(11, h, w), sigma shrunk in
proportion), 'valid' `scipy.signal.fftconvolve` as the official does, per-image means over (h, w, c) of
the SSIM and contrast-structure maps, 2x2 box downsampling, clipping of the per-image means at 0, and
prod_{s<L} cs_s^{w_s} * ssim_L^{w_L} per pair. Computed in float64 unless `dtype` says otherwise (the
official window is float64, so its convolutions already run in float64).
"""

from __future__ import annotations

import numpy as np
import scipy.signal

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(size: int, sigma: float) -> np.ndarray:
  """MATLAB fspecial('gaussian'): samples at integer (odd size) or half-integer (even size) offsets."""
  t = np.arange(size) - (size - 1) / 2.0
  g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * sigma ** 2))
  return g / g.sum()


def ssim_and_cs(a: np.ndarray, b: np.ndarray, max_val=255.0, filter_size=11, filter_sigma=1.5,
                k1=0.01, k2=0.03) -> tuple[np.ndarray, np.ndarray]:
  """Per-image mean SSIM and contrast-structure term at one scale."""
  _, h, w, _ = a.shape
  size = min(filter_size, h, w)
  if size:
    window = gaussian_window(size, size * filter_sigma / filter_size)[None, :, :, None]
    blur = lambda x: scipy.signal.fftconvolve(x, window, mode="valid")
  else:
    blur = lambda x: x
  mu_a, mu_b = blur(a), blur(b)
  var_a = blur(a * a) - mu_a * mu_a
  var_b = blur(b * b) - mu_b * mu_b
  cov = blur(a * b) - mu_a * mu_b
  c1 = (k1 * max_val) ** 2
  c2 = (k2 * max_val) ** 2
  cs_map = (2.0 * cov + c2) / (var_a + var_b + c2)
  lum_map = (2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
  return (lum_map * cs_map).mean(axis=(1, 2, 3)), cs_map.mean(axis=(1, 2, 3))


def ms_ssim(a: np.ndarray, b: np.ndarray, max_val=255.0, filter_size=11, filter_sigma=1.5, k1=0.01,
            k2=0.03, weights=WEIGHTS, dtype=np.float64) -> np.ndarray:
  """Per-pair MS-SSIM of two NHWC batches."""
  a = np.asarray(a, dtype)
  b = np.asarray(b, dtype)
  weights = np.asarray(weights, np.float64)
  ssims, css = [], []
  for level in range(len(weights)):
    s, c = ssim_and_cs(a, b, max_val, filter_size, filter_sigma, k1, k2)
    ssims.append(s)
    css.append(c)
    if level + 1 < len(weights):
      a = (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]) * 0.25
      b = (b[:, 0::2, 0::2] + b[:, 1::2, 0::2] + b[:, 0::2, 1::2] + b[:, 1::2, 1::2]) * 0.25
  ssims = np.maximum(np.asarray(ssims, np.float64), 0.0)
  css = np.maximum(np.asarray(css, np.float64), 0.0)
  return np.prod(css[:-1] ** weights[:-1, None], axis=0) * ssims[-1] ** weights[-1]


def ms_ssim_consecutive_pairs(images: np.ndarray, **kwargs) -> float:
  """Mean MS-SSIM of images[0::2] vs images[1::2] (the official metric API)."""
  return float(np.mean(ms_ssim(images[0::2], images[1::2], **kwargs)))
