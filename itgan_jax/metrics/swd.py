"""Multi-scale sliced Wasserstein distance (SWD) of Progressive GAN (Karras et al. 2018), in JAX.

Re-implements the algorithm of `tkarras/progressive_growing_of_gans metrics/sliced_wasserstein.py` (master,
papers.md B.5):

1. Laplacian pyramid per minibatch on float32 images in uint8 range: 5x5 binomial kernel
   `[1,4,6,4,1]^T [1,4,6,4,1] / 256` with the boundary of `scipy.ndimage.convolve(mode="mirror")`, i.e.
   reflection about the edge pixel without repeating it (`d c b | a b c d | c b a`; numpy `reflect`,
   OpenCV `BORDER_REFLECT_101`). pyrDown = blur then keep rows/columns 0, 2, 4, ...; pyrUp = zero-insertion
   (values at even rows/columns) then blur with the kernel x 4, the mirror boundary being applied to the
   zero-inserted image. (For pyrUp this makes the two borders differ: in coarse-image terms it reflects
   at the top/left, `x1 | x0 x1 ..`, but repeats the last sample at the bottom/right, `.. x_{n-1} | x_{n-1}`;
   we reproduce the official scipy code, not cv2.) Levels: full resolution, halved while `res >= min_res`
   (default 16; resolutions come from the image height as in the official); level i stores
   `G_i - pyrUp(G_{i+1})`, the last one the Gaussian residual `G_{L-1}`.
2. Descriptors: `descriptors_per_image` (128) 7x7 neighbourhoods per image per level with centres
   uniform over the interior `[r, size - r)`, `r = 7 // 2` (`np.random.randint(3, size - 3)` in the
   official), in the official component order `(channel, x, y)`: component (c, a, b) is the pixel at
   row `cy + b - 3`, column `cx + a - 3` (the official `np.ogrid[0:N, 0:3, -H:H+1, -H:H+1]` names
   its last two axes x and y), i.e. the flattened *transposed* `(C, 7, 7)` patch.
3. Each descriptor set (all its minibatches) is normalised per colour channel with its own mean and
   (population) std over its descriptors and the 7x7 positions.
4. `dir_repeats` (4) x `dirs_per_repeat` (128) Gaussian directions normalised to unit length; both sets
   are projected, each projection sorted, and the SWD is the mean |sorted_a - sorted_b| over descriptors
   and directions, averaged over repeats; reported x 1e3 per level, plus the average over levels.

Differences from the official code, none of which changes the algorithm:
- Images are NHWC (the official metric API receives NCHW minibatches); descriptors keep the official
  `(n, C, 7, 7)` layout, so a direction matrix means the same thing in both.
- Randomness comes from JAX keys, split deterministically per level (`swd_patch_positions`,
  `swd_directions`); the official draws from numpy's global RNG, so values differ from a run of the
  official code only through the random draws. Positions and directions can be injected.
- The blurs are computed separably / polyphase in float32 (the official 5x5 `ndimage.convolve`
  accumulates in float64 and rounds to float32); the difference is at float32 rounding level.
- Projections: all `dir_repeats * dirs_per_repeat` directions are applied as rows,
  `directions @ descriptors^T` (a jitted `dot_general`), in chunks of 128 directions (fewer for very
  large sets, see `_dirs_per_chunk`), so each projection comes out as a contiguous row ready to sort. The
  official makes the same matrix products, one repeat at a time, and sorts `(n, 128)` projections along
  axis 0. Rows are sorted either by XLA as order-preserving int32 keys (exactly the same sorted values,
  several times faster than XLA:CPU's float sort; all of a level in one jitted function, the default on
  accelerators) or, by default on the CPU backend, by NumPy on the host (rows split over one thread per
  core), because XLA:CPU's sort is still about 8x slower than NumPy's SIMD sort on these rows and the sort
  dominates the distance. On the CPU backend the host reads XLA's results without a copy, and the
  projections of the next chunk are computed while the current one is sorted.
- Any number of channels is accepted (the official asserts 3); sizes that the official would fail on
  (a pyrUp not matching the finer level) are rejected with an explanation.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

NHOOD_SIZE = 7
DESCRIPTORS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RES = 16

_BINOMIAL = (1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0)


class SWDResult(NamedTuple):
  """SWD x 1e3 per pyramid level (finest first) and their average (the official `SWDx1e3_avg`)."""
  per_level: jax.Array
  average: jax.Array


def pyramid_resolutions(resolution: int, min_res: int = MIN_RES) -> list[int]:
  """Level resolutions of the official metric: `resolution`, halved while `>= min_res`."""
  out = []
  while resolution >= min_res:
    out.append(resolution)
    resolution //= 2
  return out


def swd_metric_names(resolution: int, min_res: int = MIN_RES) -> list[str]:
  """The official metric names, e.g. `['SWDx1e3_32', 'SWDx1e3_16', 'SWDx1e3_avg']`."""
  return [f"SWDx1e3_{r}" for r in pyramid_resolutions(resolution, min_res)] + ["SWDx1e3_avg"]


# ---------------------------------------------------------------------------------------------------
# Laplacian pyramid (NHWC, float32)


def _downsample_axis(x: jax.Array, axis: int) -> jax.Array:
  """[1,4,6,4,1]/16 along `axis` with reflect-101 padding, evaluated at the even positions only."""
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (2, 2)
  xp = jnp.pad(x, pad, mode="reflect")  # numpy 'reflect' == scipy.ndimage 'mirror' == reflect-101
  out = 0.0
  for i, w in enumerate(_BINOMIAL):
    out = out + w * jax.lax.slice_in_dim(xp, i, i + n, 2, axis)  # outputs 0, 2, 4, ...
  return out


def _check_level_size(x: jax.Array, op: str) -> None:
  if x.ndim != 4:
    raise ValueError(f"{op} expects NHWC images (4-D), got shape {x.shape}.")
  if min(x.shape[1:3]) < 3:
    raise ValueError(f"{op}: the mirror boundary needs at least 3x3 pixels, got {x.shape[1:3]}.")


@jax.jit
def pyr_down(x: jax.Array) -> jax.Array:
  """Binomial blur (mirror boundary) then the even rows/columns; official `pyr_down` in NHWC."""
  _check_level_size(x, "pyr_down")
  return _downsample_axis(_downsample_axis(x, 1), 2)


def _upsample_axis(x: jax.Array, axis: int) -> jax.Array:
  """Zero-insertion + mirror padding + [1,4,6,4,1]/8 along `axis`, computed polyphase (no zeros stored).

  With u[2j] = x[j], u[2j+1] = 0 mirrored about its end samples: u[-2] = x[1] but u[2n] = u[2n-2] = x[n-1],
  so the coarse signal is effectively extended as [x1, x0 .. x_{n-1}, x_{n-1}]; then
  out[2j] = (x[j-1] + 6 x[j] + x[j+1]) / 8 and out[2j+1] = (x[j] + x[j+1]) / 2.
  """
  n = x.shape[axis]
  take = lambda start, stop: jax.lax.slice_in_dim(x, start, stop, axis=axis)
  ext = jnp.concatenate([take(1, 2), x, take(n - 1, n)], axis=axis)
  tap = lambda i: jax.lax.slice_in_dim(ext, i, i + n, axis=axis)
  even = (tap(0) + 6.0 * tap(1) + tap(2)) * 0.125
  odd = (tap(1) + tap(2)) * 0.5
  out = jnp.stack([even, odd], axis=axis + 1)
  return out.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1:])


@jax.jit
def pyr_up(x: jax.Array) -> jax.Array:
  """Official `pyr_up` in NHWC: zero-insertion (values at even rows/columns), then the binomial blur x 4
  with the mirror boundary applied to the zero-inserted image (computed polyphase, see `_upsample_axis`)."""
  if x.ndim != 4 or min(x.shape[1:3]) < 2:
    raise ValueError(f"pyr_up expects NHWC images (4-D) of at least 2x2 pixels, got shape {x.shape}.")
  return _upsample_axis(_upsample_axis(x, 1), 2)


@functools.partial(jax.jit, static_argnums=(1,))
def laplacian_pyramid(images: jax.Array, num_levels: int) -> list[jax.Array]:
  """`[G_0 - pyrUp(G_1), ..., G_{L-2} - pyrUp(G_{L-1}), G_{L-1}]` with `G_0 = float32(images)`."""
  images = jnp.asarray(images, jnp.float32)
  _check_pyramid_shape(images.shape, num_levels)
  gauss = [images]
  for _ in range(num_levels - 1):
    gauss.append(pyr_down(gauss[-1]))
  return [g - pyr_up(g_next) for g, g_next in zip(gauss[:-1], gauss[1:])] + [gauss[-1]]


@jax.jit
def reconstruct_laplacian_pyramid(pyramid: Sequence[jax.Array]) -> jax.Array:
  """Inverse of `laplacian_pyramid`: `G_i = level_i + pyrUp(G_{i+1})` from the coarsest level up."""
  out = pyramid[-1]
  for level in reversed(pyramid[:-1]):
    out = pyr_up(out) + level
  return out


def _check_pyramid_shape(shape: tuple[int, ...], num_levels: int, nhood_size: int = 3) -> None:
  if len(shape) != 4:
    raise ValueError(f"SWD expects NHWC images (4-D), got shape {shape}.")
  if shape[-1] > 4 and shape[1] <= 4:
    raise ValueError(f"SWD expects NHWC images; shape {shape} looks like NCHW, transpose it to NHWC.")
  if num_levels < 1:
    raise ValueError(f"Image height {shape[1]} gives no pyramid level; it must be >= min_res.")
  f = 2 ** (num_levels - 1)
  h, w = shape[1:3]
  if h % f or w % f:
    raise ValueError(f"Image size {h}x{w} must be divisible by 2^(levels-1) = {f} for a {num_levels}-level "
                     "Laplacian pyramid (pyrUp of a level must match the finer level); crop or resize.")
  if min(h, w) // f < max(nhood_size, 3):
    raise ValueError(f"The coarsest level ({h // f}x{w // f}) is smaller than the {nhood_size}x{nhood_size} "
                     "neighbourhood; raise min_res.")


# ---------------------------------------------------------------------------------------------------
# Descriptors


def _level_shapes(h: int, w: int, num_levels: int) -> list[tuple[int, int]]:
  return [(h >> i, w >> i) for i in range(num_levels)]


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _positions(key, num_images, level_shapes, descriptors_per_image, nhood_size):
  r = nhood_size // 2
  out = []
  for level_key, (h, w) in zip(jax.random.split(key, len(level_shapes)), level_shapes):
    key_rows, key_cols = jax.random.split(level_key)
    n = num_images * descriptors_per_image
    rows = jax.random.randint(key_rows, (n,), r, h - r, dtype=jnp.int32)
    cols = jax.random.randint(key_cols, (n,), r, w - r, dtype=jnp.int32)
    out.append((rows, cols))
  return out


def swd_patch_positions(key: jax.Array, image_shape: Sequence[int], *,
                        descriptors_per_image: int = DESCRIPTORS_PER_IMAGE, nhood_size: int = NHOOD_SIZE,
                        min_res: int = MIN_RES) -> list[tuple[jax.Array, jax.Array]]:
  """Neighbourhood centres used by `swd_descriptors(images, key)` for NHWC `image_shape`.

  Returns per level `(rows, cols)`, int32 arrays of length `N * descriptors_per_image`; entry `k` belongs
  to image `k // descriptors_per_image` and is uniform over `[r, size - r)`, `r = nhood_size // 2`.
  """
  n, h, w = image_shape[:3]
  num_levels = len(pyramid_resolutions(h, min_res))
  _check_pyramid_shape(tuple(image_shape), num_levels, nhood_size)
  return _positions(key, n, tuple(_level_shapes(h, w, num_levels)), descriptors_per_image, nhood_size)


def _extract(level: jax.Array, rows: jax.Array, cols: jax.Array, per_image: int, nhood_size: int):
  """Neighbourhood k of image k // per_image around (rows[k], cols[k]), as (n, C, s, s) in the
  official (channel, column offset, row offset) order."""
  r = nhood_size // 2
  offsets = jnp.arange(-r, r + 1, dtype=jnp.int32)
  image = (jnp.arange(rows.shape[0], dtype=jnp.int32) // per_image)[:, None, None, None]
  chan = jnp.arange(level.shape[3], dtype=jnp.int32)[None, :, None, None]
  # Gathering from the NCHW view yields the official (n, C, s, s) order without a transpose afterwards.
  return jnp.transpose(level, (0, 3, 1, 2))[image, chan, (rows[:, None] + offsets)[:, None, None, :],
                                            (cols[:, None] + offsets)[:, None, :, None]]


@functools.partial(jax.jit, static_argnums=(2, 3))
def _extract_levels(pyramid, positions, per_image, nhood_size):
  return [_extract(level, rows, cols, per_image, nhood_size)
          for level, (rows, cols) in zip(pyramid, positions)]


def _descriptors(images, positions, num_levels, per_image, nhood_size):
  # Two jitted calls: on XLA:CPU, fusing the pyramid and the gathers into one program is ~2-3x slower.
  return _extract_levels(laplacian_pyramid(images, num_levels), positions, per_image, nhood_size)


def swd_descriptors(images: jax.Array, key: jax.Array | None, *,
                    descriptors_per_image: int = DESCRIPTORS_PER_IMAGE, nhood_size: int = NHOOD_SIZE,
                    min_res: int = MIN_RES,
                    positions: Sequence[tuple[jax.Array, jax.Array]] | None = None) -> list[jax.Array]:
  """Raw (unnormalised) SWD descriptors of one minibatch; official `get_descriptors_for_minibatch`.

  Args:
    images: NHWC images, uint8 or float in uint8 range [0, 255].
    key: PRNG key for the neighbourhood centres (`swd_patch_positions`); ignored if `positions` is given.
    descriptors_per_image: neighbourhoods per image per level (official 128).
    nhood_size: neighbourhood side (official 7).
    min_res: coarsest pyramid resolution (official 16).
    positions: optional per-level `(rows, cols)` centres, as returned by `swd_patch_positions`.

  Returns:
    Per level (finest first) float32 `(N * descriptors_per_image, C, nhood_size, nhood_size)`. Accumulate
    minibatches by concatenating each level (the official feeds 16,384 images in minibatches).
  """
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"SWD expects NHWC images (4-D), got shape {images.shape}.")
  num_levels = len(pyramid_resolutions(images.shape[1], min_res))
  _check_pyramid_shape(images.shape, num_levels, nhood_size)
  if positions is None:
    if key is None:
      raise ValueError("swd_descriptors needs a PRNG key or explicit positions.")
    positions = swd_patch_positions(key, images.shape, descriptors_per_image=descriptors_per_image,
                                    nhood_size=nhood_size, min_res=min_res)
  else:
    positions = _check_positions(positions, images.shape, num_levels, descriptors_per_image, nhood_size)
  return _descriptors(images, positions, num_levels, descriptors_per_image, nhood_size)


def _check_positions(positions, shape, num_levels, per_image, nhood_size):
  """Validates injected centres (XLA would silently clamp out-of-range gathers)."""
  if len(positions) != num_levels:
    raise ValueError(f"positions has {len(positions)} levels, the pyramid has {num_levels}.")
  r = nhood_size // 2
  expected = shape[0] * per_image
  out = []
  for i, ((rows, cols), (h, w)) in enumerate(zip(positions, _level_shapes(shape[1], shape[2], num_levels))):
    rows, cols = np.asarray(rows), np.asarray(cols)
    if rows.shape != (expected,) or cols.shape != (expected,):
      raise ValueError(f"positions must hold {expected} rows and cols per level (N * descriptors_per_image), "
                       f"got {rows.shape} and {cols.shape} at level {i}.")
    if rows.min() < r or rows.max() >= h - r or cols.min() < r or cols.max() >= w - r:
      raise ValueError(f"Level {i} ({h}x{w}): centres must lie in rows [{r}, {h - r}) and cols "
                       f"[{r}, {w - r}) so that the whole neighbourhood is inside the image.")
    out.append((jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32)))
  return out


class SWDAccumulator:
  """Collects descriptors over minibatches (official `API.feed`), one fresh key per minibatch.

  Memory as in the official: 16,384 images keep 2M descriptors (1.2 GB float32) per level.
  """

  def __init__(self, key: jax.Array, *, descriptors_per_image: int = DESCRIPTORS_PER_IMAGE,
               nhood_size: int = NHOOD_SIZE, min_res: int = MIN_RES):
    self._key = key
    self._kwargs = dict(descriptors_per_image=descriptors_per_image, nhood_size=nhood_size, min_res=min_res)
    self._chunks: list[list[jax.Array]] = []

  def feed(self, images: jax.Array) -> None:
    self._key, sub = jax.random.split(self._key)
    self._chunks.append(swd_descriptors(images, sub, **self._kwargs))

  def descriptors(self) -> list[jax.Array]:
    """Per-level descriptors of everything fed so far."""
    if not self._chunks:
      raise ValueError("SWDAccumulator: feed at least one minibatch first.")
    return [jnp.concatenate(level) for level in zip(*self._chunks)]


# ---------------------------------------------------------------------------------------------------
# Distance


def normalize_descriptors(desc: jax.Array) -> jax.Array:
  """Official `finalize_descriptors`: per-channel mean/std over the whole set, flattened to (n, C*s*s)."""
  desc = jnp.asarray(desc, jnp.float32)
  # Two-stage means (per descriptor, then over descriptors) keep float32 error small for millions of rows.
  mean = jnp.mean(jnp.mean(desc, axis=(2, 3)), axis=0)[None, :, None, None]
  centred = desc - mean
  var = jnp.mean(jnp.mean(jnp.square(centred), axis=(2, 3)), axis=0)
  return (centred / jnp.sqrt(var)[None, :, None, None]).reshape(desc.shape[0], -1)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _directions(key, dim, dir_repeats, dirs_per_repeat):
  d = jax.random.normal(key, (dir_repeats, dim, dirs_per_repeat), jnp.float32)
  return d / jnp.sqrt(jnp.sum(jnp.square(d), axis=1, keepdims=True))


def swd_directions(key: jax.Array, dim: int, dir_repeats: int = DIR_REPEATS,
                   dirs_per_repeat: int = DIRS_PER_REPEAT) -> jax.Array:
  """Unit projection directions `(dir_repeats, dim, dirs_per_repeat)`: Gaussian, normalised per column."""
  return _directions(key, dim, dir_repeats, dirs_per_repeat)


def _sortable_int32(x: jax.Array) -> jax.Array:
  """Order-preserving float32 -> int32 bijection (an involution on the bit pattern).

  Negative floats get their magnitude bits flipped so that signed-int order equals float order. XLA:CPU
  sorts int32 with a plain `<` comparator several times faster than float32 (whose comparator handles
  NaN and -0.0); sorting the keys and mapping back gives exactly the sorted floats.
  """
  i = jax.lax.bitcast_convert_type(x, jnp.int32)
  return i ^ ((i >> 31) & jnp.int32(0x7FFFFFFF))


def _from_sortable_int32(k: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(k ^ ((k >> 31) & jnp.int32(0x7FFFFFFF)), jnp.float32)


def _sort_rows(proj: jax.Array) -> jax.Array:
  """Each row sorted ascending, by XLA on order-preserving int32 keys (same values as a float sort)."""
  return _from_sortable_int32(jax.lax.sort(_sortable_int32(proj), dimension=1, is_stable=False))


_HOST_SORT_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _host_threads() -> int:
  try:
    return max(1, min(len(os.sched_getaffinity(0)), 8))
  except AttributeError:  # no sched_getaffinity (macOS)
    return max(1, min(os.cpu_count() or 1, 8))


def _host_sorted_distance(proj_a: np.ndarray, proj_b: np.ndarray) -> float:
  """mean |sort(proj_a) - sort(proj_b)| over all values, each row sorted by NumPy's (SIMD) sort.

  Rows (directions) are split over a thread pool of one thread per available core (NumPy releases the
  GIL while sorting); the absolute differences are summed in float32 along each row (pairwise) and in
  float64 over rows.
  """
  global _HOST_SORT_POOL
  threads = _host_threads()
  if _HOST_SORT_POOL is None:
    _HOST_SORT_POOL = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="swd_sort")
  proj_a, proj_b = np.asarray(proj_a), np.asarray(proj_b)
  rows = proj_a.shape[0]
  bounds = np.linspace(0, rows, min(threads, rows) + 1).astype(int)

  def part(lo_hi):
    lo, hi = lo_hi
    diff = np.sort(proj_a[lo:hi], axis=1)
    np.subtract(diff, np.sort(proj_b[lo:hi], axis=1), out=diff)
    np.abs(diff, out=diff)
    return float(np.sum(np.sum(diff, axis=1), dtype=np.float64))

  return sum(_HOST_SORT_POOL.map(part, zip(bounds[:-1], bounds[1:]))) / proj_a.size


# Directions per chunk: one repeat's 128, fewer when the projections of a chunk would exceed this many
# float32 values per set (128 MB; e.g. 16,384 images give 2M descriptors per level: 32 directions),
# but at least `_MIN_DIRS_PER_CHUNK`: each chunk re-reads all descriptors (1.2 GB per level and set at
# 2M), and XLA's matrix product is about 2x less efficient at 32 directions than at 128.
_DIRS_PER_CHUNK = 128
_PROJECTION_VALUES_PER_CHUNK = 1 << 25
_MIN_DIRS_PER_CHUNK = 32


def _dirs_per_chunk(num_descriptors: int, num_dirs: int) -> int:
  """The largest divisor of `num_dirs` not above the chunk size the constants above ask for."""
  want = min(_DIRS_PER_CHUNK, _PROJECTION_VALUES_PER_CHUNK // max(num_descriptors, 1))
  want = max(_MIN_DIRS_PER_CHUNK, want)
  return next(c for c in range(min(num_dirs, want), 0, -1) if num_dirs % c == 0)


@functools.partial(jax.jit, static_argnums=(1,))
def _direction_chunks(directions: jax.Array, dirs_per_chunk: int) -> jax.Array:
  """(repeats, dim, per_repeat) -> (chunks, dirs_per_chunk, dim): every direction as a row, repeat-major."""
  repeats, dim, per_repeat = directions.shape
  return jnp.transpose(directions, (0, 2, 1)).reshape(-1, dirs_per_chunk, dim)


def _project(dirs: jax.Array, x: jax.Array) -> jax.Array:
  """`dirs @ x.T`: (directions, dim) x (n, dim) -> (direction, descriptor), each projection a contiguous
  row ready to be sorted (no transpose of the descriptors or of the projections is materialised)."""
  return jax.lax.dot_general(dirs, x, (((1,), (1,)), ((), ())))


_project_jit = jax.jit(_project)
_normalize_jit = jax.jit(normalize_descriptors)


@functools.partial(jax.jit, static_argnums=(3,))
def _level_distance_xla(desc_a, desc_b, directions, dirs_per_chunk):
  """SWD x 1e3 of one level entirely in XLA (rows sorted as int32 keys), chunk by chunk."""
  a, b = normalize_descriptors(desc_a), normalize_descriptors(desc_b)
  chunks = _direction_chunks(directions, dirs_per_chunk)

  def one_chunk(d):
    diff = jnp.abs(_sort_rows(_project(d, a)) - _sort_rows(_project(d, b)))
    return jnp.mean(jnp.mean(diff, axis=1))

  # All chunks hold the same number of values, so the mean over chunks equals the official mean over
  # repeats of the mean over (descriptor, direction).
  means = one_chunk(chunks[0])[None] if chunks.shape[0] == 1 else jax.lax.map(one_chunk, chunks)
  return jnp.mean(means) * 1e3


def _level_distance_host(desc_a, desc_b, directions, dirs_per_chunk) -> jax.Array:
  """SWD x 1e3 of one level: normalisation and projections jitted, the rows sorted by NumPy.

  On the CPU backend `np.asarray` of a result is a view (no copy) and jitted calls return before they
  finish, so the projections of the next chunk are computed by XLA while NumPy sorts the current one.
  """
  a, b = _normalize_jit(desc_a), _normalize_jit(desc_b)
  chunks = _direction_chunks(directions, dirs_per_chunk)
  total = 0.0
  pending = (_project_jit(chunks[0], a), _project_jit(chunks[0], b))
  for i in range(chunks.shape[0]):
    proj_a, proj_b = pending
    if i + 1 < chunks.shape[0]:
      pending = (_project_jit(chunks[i + 1], a), _project_jit(chunks[i + 1], b))
    total += _host_sorted_distance(proj_a, proj_b)
  return jnp.float32(total / chunks.shape[0] * 1e3)


def _as_level_array(level) -> jax.Array:
  if isinstance(level, (list, tuple)):
    return jnp.concatenate([jnp.asarray(x) for x in level])
  return jnp.asarray(level)


def sliced_wasserstein_distance(desc_a: Sequence[jax.Array], desc_b: Sequence[jax.Array],
                                key: jax.Array | None, dir_repeats: int = DIR_REPEATS,
                                dirs_per_repeat: int = DIRS_PER_REPEAT,
                                directions: Sequence[jax.Array] | None = None,
                                sort_on_host: bool | None = None) -> SWDResult:
  """SWD x 1e3 between two sets of raw descriptors (official `finalize_descriptors` + `sliced_wasserstein`).

  Args:
    desc_a, desc_b: per level, raw descriptors `(n, C, s, s)` from `swd_descriptors` (or a list of
      per-minibatch arrays, concatenated here). Both sets need the same count per level.
    key: PRNG key for the directions (level `i` uses `split(key, L)[i]` via `swd_directions`); ignored if
      `directions` is given.
    dir_repeats, dirs_per_repeat: official 4 x 128 = 512 projections.
    directions: optional per-level `(dir_repeats, C*s*s, dirs_per_repeat)` unit directions.
    sort_on_host: sort the projections with NumPy on the host instead of XLA's sort. XLA:CPU sorts
      about 8x slower than NumPy's SIMD sort and the sort dominates the distance, so the default (None)
      is True on the CPU backend and False on accelerators. Both give the same sorted values (the final
      mean differs only by summation order).

  Returns:
    `SWDResult(per_level, average)`, per-level values finest first.
  """
  if len(desc_a) != len(desc_b) or not desc_a:
    raise ValueError(f"Descriptor sets need the same non-zero number of levels, got {len(desc_a)} and "
                     f"{len(desc_b)}.")
  if sort_on_host is None:
    sort_on_host = jax.default_backend() == "cpu"
  if directions is None:
    if key is None:
      raise ValueError("sliced_wasserstein_distance needs a PRNG key or explicit directions.")
    keys = jax.random.split(key, len(desc_a))
  dists = []
  for i, (a, b) in enumerate(zip(desc_a, desc_b)):
    a, b = _as_level_array(a), _as_level_array(b)
    if a.ndim != 4 or a.shape != b.shape:
      raise ValueError(f"Level {i}: descriptors must be (n, C, s, s) with equal shapes in both sets, got "
                       f"{a.shape} and {b.shape} (use the same number of images and descriptors_per_image).")
    dim = int(np.prod(a.shape[1:]))
    dirs = swd_directions(keys[i], dim, dir_repeats, dirs_per_repeat) if directions is None \
        else jnp.asarray(directions[i], jnp.float32)
    if dirs.ndim != 3 or dirs.shape[1] != dim:
      raise ValueError(f"Level {i}: directions must be (repeats, {dim}, dirs), got {dirs.shape}.")
    per_chunk = _dirs_per_chunk(a.shape[0], dirs.shape[0] * dirs.shape[2])
    level_distance = _level_distance_host if sort_on_host else _level_distance_xla
    dists.append(level_distance(a, b, dirs, per_chunk))
  per_level = jnp.stack(dists)
  return SWDResult(per_level, jnp.mean(per_level))


def swd(images_a: jax.Array, images_b: jax.Array, key: jax.Array, *,
        descriptors_per_image: int = DESCRIPTORS_PER_IMAGE, nhood_size: int = NHOOD_SIZE,
        min_res: int = MIN_RES, dir_repeats: int = DIR_REPEATS,
        dirs_per_repeat: int = DIRS_PER_REPEAT, sort_on_host: bool | None = None) -> SWDResult:
  """SWD x 1e3 between two NHWC image sets in one call (all images in one minibatch each)."""
  key_a, key_b, key_d = jax.random.split(key, 3)
  kwargs = dict(descriptors_per_image=descriptors_per_image, nhood_size=nhood_size, min_res=min_res)
  desc_a = swd_descriptors(images_a, key_a, **kwargs)
  desc_b = swd_descriptors(images_b, key_b, **kwargs)
  return sliced_wasserstein_distance(desc_a, desc_b, key_d, dir_repeats, dirs_per_repeat,
                                     sort_on_host=sort_on_host)
