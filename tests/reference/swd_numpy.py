"""NumPy/SciPy re-derivation of the ProGAN multi-scale sliced Wasserstein distance.

Written from the description of `tkarras/progressive_growing_of_gans metrics/sliced_wasserstein.py`
(papers.md B.5) in the official layout (NCHW, descriptors `(n, C, 7, 7)`), with SciPy's `ndimage.convolve`
(mode `mirror`) for the pyramid as the official does. Patch positions and projection directions can be
injected so the result can be compared value-for-value with `itgan_jax.metrics.swd`; without them they
are drawn from a `numpy.random.Generator`, as the official draws from numpy's global RNG.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

BINOMIAL_5X5 = np.outer([1.0, 4.0, 6.0, 4.0, 1.0], [1.0, 4.0, 6.0, 4.0, 1.0]).astype(np.float32) / 256.0


def blur(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
  """5x5 binomial filter over the two last axes of an NCHW array, mirror (reflect-101) boundary."""
  kernel = (BINOMIAL_5X5 * np.float32(scale))[None, None]
  return scipy.ndimage.convolve(x, kernel, mode="mirror")


def pyr_down(x: np.ndarray) -> np.ndarray:
  """Blur, then keep the even rows and columns (cv2.pyrDown-like)."""
  return blur(x)[:, :, 0::2, 0::2]


def pyr_up(x: np.ndarray) -> np.ndarray:
  """Insert zeros after every row/column, then blur with the kernel times 4."""
  n, c, h, w = x.shape
  up = np.zeros((n, c, 2 * h, 2 * w), x.dtype)
  up[:, :, 0::2, 0::2] = x
  return blur(up, 4.0)


def laplacian_pyramid(x: np.ndarray, num_levels: int) -> list[np.ndarray]:
  """[G_0 - up(G_1), ..., G_{L-2} - up(G_{L-1}), G_{L-1}] on float32 copies."""
  gauss = [np.asarray(x, np.float32)]
  for _ in range(num_levels - 1):
    gauss.append(pyr_down(gauss[-1]))
  return [g - pyr_up(g_next) for g, g_next in zip(gauss[:-1], gauss[1:])] + [gauss[-1]]


def reconstruct(pyramid: list[np.ndarray]) -> np.ndarray:
  out = pyramid[-1]
  for level in reversed(pyramid[:-1]):
    out = pyr_up(out) + level
  return out


def num_levels(resolution: int, min_res: int = 16) -> int:
  n = 0
  while resolution >= min_res:
    n += 1
    resolution //= 2
  return n


def random_positions(rng: np.random.Generator, num_patches: int, h: int, w: int,
                     nhood_size: int = 7) -> tuple[np.ndarray, np.ndarray]:
  """Patch centres (rows, cols) uniform in [r, size - r) with r = nhood_size // 2."""
  r = nhood_size // 2
  cols = rng.integers(r, w - r, size=num_patches)
  rows = rng.integers(r, h - r, size=num_patches)
  return rows, cols


def patches(level: np.ndarray, rows: np.ndarray, cols: np.ndarray, per_image: int,
            nhood_size: int = 7) -> np.ndarray:
  """Patch k (of image k // per_image) centred at (rows[k], cols[k]); result (n, C, s, s) in the
  official (channel, x = column offset, y = row offset) order."""
  r = nhood_size // 2
  offsets = np.arange(-r, r + 1)
  image = (np.arange(len(rows)) // per_image)[:, None, None, None]
  chan = np.arange(level.shape[1])[None, :, None, None]
  row = (np.asarray(rows)[:, None] + offsets)[:, None, None, :]
  col = (np.asarray(cols)[:, None] + offsets)[:, None, :, None]
  return level[image, chan, row, col]


def descriptors(images_nchw: np.ndarray, per_image: int = 128, nhood_size: int = 7, min_res: int = 16,
                positions=None, rng: np.random.Generator | None = None) -> list[np.ndarray]:
  """Raw per-level descriptors of one minibatch; `positions[l] = (rows, cols)` or random."""
  levels = laplacian_pyramid(images_nchw, num_levels(images_nchw.shape[2], min_res))
  out = []
  for i, level in enumerate(levels):
    if positions is None:
      rows, cols = random_positions(rng, per_image * level.shape[0], level.shape[2], level.shape[3],
                                    nhood_size)
    else:
      rows, cols = (np.asarray(p) for p in positions[i])
    out.append(patches(level, rows, cols, per_image, nhood_size))
  return out


def normalise(desc: np.ndarray) -> np.ndarray:
  """Per-channel standardisation with the set's own statistics, then flatten to (n, C*s*s)."""
  desc = np.asarray(desc, np.float32)
  mean = desc.mean(axis=(0, 2, 3), keepdims=True)
  centred = desc - mean
  std = centred.std(axis=(0, 2, 3), keepdims=True)
  return (centred / std).reshape(len(desc), -1)


def random_directions(rng: np.random.Generator, dim: int, repeats: int = 4, per_repeat: int = 128):
  d = rng.standard_normal((repeats, dim, per_repeat))
  return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
  """Mean over repeats of mean |sort(a d) - sort(b d)| for normalised descriptor sets a, b."""
  per_repeat = []
  for d in directions:
    pa = np.sort(a @ d, axis=0)
    pb = np.sort(b @ d, axis=0)
    per_repeat.append(np.mean(np.abs(pa - pb)))
  return float(np.mean(per_repeat))


def swd(desc_a: list[np.ndarray], desc_b: list[np.ndarray], directions=None,
        rng: np.random.Generator | None = None, repeats: int = 4, per_repeat: int = 128) -> list[float]:
  """Per-level SWD x 1e3 followed by their average; `directions[l]` is (repeats, dim, per_repeat)."""
  dists = []
  for i, (a, b) in enumerate(zip(desc_a, desc_b)):
    a, b = normalise(a), normalise(b)
    dirs = random_directions(rng, a.shape[1], repeats, per_repeat) if directions is None \
        else np.asarray(directions[i])
    dists.append(1e3 * sliced_wasserstein(a, b, dirs))
  return dists + [float(np.mean(dists))]
