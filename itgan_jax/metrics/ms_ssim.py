"""MS-SSIM (Wang, Simoncelli & Bovik 2003) as used by Progressive GAN, in JAX.

Re-implements `tkarras/progressive_growing_of_gans metrics/ms_ssim.py` (master; itself adapted from
`tensorflow/models research/compression/image_encoder/msssim.py`), papers.md B.6:

- NHWC RGB images in uint8 range, `max_val = 255`, `k1 = 0.01`, `k2 = 0.03`;
- at each scale a Gaussian window of size `min(11, h, w)` and sigma `1.5 * size / 11` (MATLAB
  `fspecial('gaussian')`: offsets are half-integers for an even size), applied as a 'valid' convolution
  to `x`, `y`, `x^2`, `y^2`, `xy`; SSIM and contrast-structure (cs) maps averaged per image over
  (h, w, channel);
- 5 scales with weights `[0.0448, 0.2856, 0.3001, 0.2363, 0.1333]` (they do not sum to 1, as in the
  paper/MATLAB code), 2x2 box downsampling between scales;
- the per-image *means* of ssim and cs (not the maps) are clipped at 0 before the powers ("otherwise we
  get NaNs"), and the per-pair score is `prod_{s<5} cs_s^{w_s} * ssim_5^{w_5}`;
- the metric averages this over pairs of consecutive generated images (`images[0::2]` vs `images[1::2]`).

Differences from the official code (same definition, different arithmetic):
- The official convolves with `scipy.signal.fftconvolve` and a float64 window (so in float64); here the
  separable Gaussian is applied directly in float32 (banded matrix products up to 64 pixels, shifted-slice
  sums above). To keep float32 accurate the second moments are taken of images centred by their
  per-image, per-channel mean (variances and covariance are invariant to that shift; the means are
  shifted back), which avoids the cancellation in `E[x^2] - E[x]^2` at 8-bit magnitudes (it brings the
  deviation from a float64 evaluation from ~2e-5 down to ~2e-7).
- The 2x2 downsampling after the last scale (computed and discarded by the official) is skipped.
- Sizes not divisible by `2^(scales-1)` are rejected with an explanation; the official 2x2 downsampling
  then fails with a broadcasting error (or, for a 3-pixel side, silently broadcasts mismatched slices).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window_1d(size: int, sigma: float) -> np.ndarray:
  """1-D factor of MATLAB `fspecial('gaussian', size, sigma)`; the 2-D window is its outer product.

  The official 2-D window `exp(-(x^2 + y^2) / (2 sigma^2))`, normalised to sum 1, factorises exactly into
  this normalised 1-D window times itself.
  """
  t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  g = np.exp(-(t * t) / (2.0 * sigma * sigma))
  return g / g.sum()


_MATMUL_BLUR_MAX_SIZE = 64


def _band_matrix(size_in: int, window: np.ndarray) -> np.ndarray:
  """(size_in - k + 1, size_in) matrix whose product with a vector is its 'valid' correlation with window."""
  out = size_in - len(window) + 1
  m = np.zeros((out, size_in), np.float32)
  for i in range(out):
    m[i, i:i + len(window)] = window
  return m


def _blur_valid(x: jax.Array, window: np.ndarray) -> jax.Array:
  """'valid' separable convolution over the two last axes; the window is symmetric.

  Small images use two matrix products with banded matrices (fast GEMMs, few ops to compile); large ones
  use shifted-slice sums, whose cost per pixel is the window size rather than the image size.
  """
  size = len(window)
  h, w = x.shape[-2], x.shape[-1]
  if max(h, w) <= _MATMUL_BLUR_MAX_SIZE:
    rows = jnp.einsum("oh,...hw->...ow", _band_matrix(h, window), x)
    return jnp.einsum("...ow,pw->...op", rows, _band_matrix(w, window))
  rows = sum(float(g) * jax.lax.slice_in_dim(x, i, i + h - size + 1, axis=x.ndim - 2)
             for i, g in enumerate(window))
  return sum(float(g) * jax.lax.slice_in_dim(rows, i, i + w - size + 1, axis=x.ndim - 1)
             for i, g in enumerate(window))


def _ssim_cs(a, b, max_val, filter_size, filter_sigma, k1, k2):
  """Per-image mean SSIM and cs at one scale (official `_SSIMForMultiScale`) of NCHW float32 batches."""
  h, w = a.shape[2:4]
  size = min(filter_size, h, w)
  # Shift by per-image channel means: the variances and covariance do not change, float32 error shrinks.
  shift_a = jnp.mean(a, axis=(2, 3), keepdims=True)
  shift_b = jnp.mean(b, axis=(2, 3), keepdims=True)
  ac, bc = a - shift_a, b - shift_b
  maps = jnp.stack([ac, bc, ac * ac, bc * bc, ac * bc])
  if size:
    maps = _blur_valid(maps, gaussian_window_1d(size, size * filter_sigma / filter_size))
  mu_ac, mu_bc, e_aa, e_bb, e_ab = maps
  var_a = e_aa - mu_ac * mu_ac
  var_b = e_bb - mu_bc * mu_bc
  cov = e_ab - mu_ac * mu_bc
  mu_a = mu_ac + shift_a
  mu_b = mu_bc + shift_b
  c1 = (k1 * max_val) ** 2
  c2 = (k2 * max_val) ** 2
  cs_map = (2.0 * cov + c2) / (var_a + var_b + c2)
  ssim_map = (2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1) * cs_map
  return jnp.mean(ssim_map, axis=(1, 2, 3)), jnp.mean(cs_map, axis=(1, 2, 3))


def _box_downsample(x: jax.Array) -> jax.Array:
  """Official `_HoxDownsample`: mean of each 2x2 block (NCHW)."""
  return (x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 1::2]) * 0.25


def _ms_ssim_batch(a, b, max_val, filter_size, filter_sigma, k1, k2, weights):
  """Per-pair scores of two NHWC batches (official `msssim` without its final mean)."""
  # NCHW inside: the filters then run along the contiguous width axis (faster on CPU than C=3 minor).
  a = jnp.transpose(a.astype(jnp.float32), (0, 3, 1, 2))
  b = jnp.transpose(b.astype(jnp.float32), (0, 3, 1, 2))
  ssims, css = [], []
  for level in range(len(weights)):
    s, c = _ssim_cs(a, b, max_val, filter_size, filter_sigma, k1, k2)
    ssims.append(s)
    css.append(c)
    if level + 1 < len(weights):
      a, b = _box_downsample(a), _box_downsample(b)
  # Official: clip the per-image means of all scales at 0, then the weighted product.
  ssim = jnp.maximum(jnp.stack(ssims), 0.0)
  cs = jnp.maximum(jnp.stack(css), 0.0)
  w = jnp.asarray(weights, jnp.float32)[:, None]
  return jnp.prod(cs[:-1] ** w[:-1], axis=0) * ssim[-1] ** w[-1]


# Pairs are processed in chunks of about this many pixels per image, so the ~15 intermediate maps of a
# chunk stay in cache (about 2x faster on CPU than one whole-batch pass).
_PIXELS_PER_CHUNK = 16384


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6, 7))
def _ms_ssim(a, b, max_val, filter_size, filter_sigma, k1, k2, weights):
  args = (max_val, filter_size, filter_sigma, k1, k2, weights)
  n = a.shape[0]
  chunk = max(1, min(n, _PIXELS_PER_CHUNK // (a.shape[1] * a.shape[2])))
  main = n - n % chunk
  out = []
  if main:
    split = lambda x: x[:main].reshape((main // chunk, chunk) + x.shape[1:])
    out.append(jax.lax.map(lambda ab: _ms_ssim_batch(*ab, *args), (split(a), split(b))).reshape(main))
  if main < n:
    out.append(_ms_ssim_batch(a[main:], b[main:], *args))
  return jnp.concatenate(out)


def ms_ssim(images_a: jax.Array, images_b: jax.Array, *, max_val: float = 255.0, filter_size: int = 11,
            filter_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03,
            weights: Sequence[float] = WEIGHTS) -> jax.Array:
  """Per-pair MS-SSIM of two NHWC batches in uint8 range (official `msssim` before its mean over pairs).

  Args:
    images_a, images_b: (N, H, W, C) uint8 or float; H and W divisible by `2^(len(weights)-1)`.
    max_val: dynamic range (255 for uint8).
    filter_size, filter_sigma: Gaussian window (shrunk to `min(size, h, w)` with sigma in proportion at
      small scales; 0 disables the blur).
    k1, k2: SSIM stabilisers.
    weights: per-scale exponents; their number is the number of scales.

  Returns:
    float32 (N,) scores in [0, 1] (1 for identical images).
  """
  a = jnp.asarray(images_a)
  b = jnp.asarray(images_b)
  if a.shape != b.shape:
    raise ValueError(f"MS-SSIM needs two batches of the same shape, got {a.shape} and {b.shape}.")
  if a.ndim != 4:
    raise ValueError(f"MS-SSIM expects NHWC batches (4-D), got shape {a.shape}.")
  if a.shape[-1] > 4 and a.shape[1] <= 4:
    raise ValueError(f"MS-SSIM expects NHWC images; shape {a.shape} looks like NCHW, transpose it to NHWC.")
  weights = tuple(float(w) for w in weights)
  if not weights:
    raise ValueError("MS-SSIM needs at least one scale weight.")
  f = 2 ** (len(weights) - 1)
  if a.shape[1] % f or a.shape[2] % f:
    raise ValueError(f"Image size {a.shape[1]}x{a.shape[2]} must be divisible by 2^(scales-1) = {f} for "
                     f"{len(weights)} MS-SSIM scales; crop or resize the images.")
  return _ms_ssim(a, b, float(max_val), int(filter_size), float(filter_sigma), float(k1), float(k2),
                  weights)


def ms_ssim_consecutive_pairs(images: jax.Array, **kwargs) -> jax.Array:
  """ProGAN's diversity metric: mean MS-SSIM of `images[0::2]` vs `images[1::2]` (lower = more diverse).

  The official `API` accumulates `msssim(mb[0::2], mb[1::2]) * pairs` over minibatches and divides by the
  number of pairs, i.e. the mean over all pairs; `kwargs` go to `ms_ssim`.
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[0] < 2 or images.shape[0] % 2:
    raise ValueError(f"Need an even number (>= 2) of NHWC images to form consecutive pairs, got shape "
                     f"{images.shape}.")
  return jnp.mean(ms_ssim(images[0::2], images[1::2], **kwargs))
