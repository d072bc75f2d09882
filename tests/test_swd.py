"""Sliced Wasserstein distance vs an independent NumPy/SciPy version of the official algorithm."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.metrics import swd as S
from tests.reference import swd_numpy as ref


def _images(seed: int, n: int, res: int, noise: float = 20.0) -> np.ndarray:
  """uint8 NHWC images with structure at several scales (blocky colours + gradient + noise)."""
  rng = np.random.default_rng(seed)
  blocks = np.kron(rng.uniform(0, 255, (n, res // 8, res // 8, 3)), np.ones((1, 8, 8, 1)))
  ramp = np.linspace(0, 60, res)[None, :, None, None]
  x = 0.6 * blocks + ramp + rng.normal(0, noise, (n, res, res, 3))
  return np.clip(x, 0, 255).astype(np.uint8)


def _nchw(x) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))


@pytest.mark.parametrize("res", [32, 64])
def test_pyramid_matches_reference(res):
  x = _images(0, 64, res)
  levels = ref.num_levels(res)
  ours = S.laplacian_pyramid(x, levels)
  theirs = ref.laplacian_pyramid(_nchw(x), levels)
  assert len(ours) == len(theirs) == len(S.pyramid_resolutions(res))
  for i, (a, b) in enumerate(zip(ours, theirs)):
    chex.assert_shape(a, (64, res >> i, res >> i, 3))
    np.testing.assert_allclose(_nchw(a), b, atol=1e-3, rtol=0)


def test_pyr_down_up_boundary_is_reflect_101():
  """Spot-check the mirror boundary with hand-computed 1-D values (no SciPy involved)."""
  row = np.arange(8, dtype=np.float32) ** 2  # 0 1 4 9 16 25 36 49
  x = np.broadcast_to(row[None, None, :, None], (1, 8, 8, 1))
  k = np.array([1, 4, 6, 4, 1]) / 16
  padded = np.concatenate([row[2:0:-1], row, row[-2:-4:-1]])  # reflect-101: 4 1 | 0 .. 49 | 36 25
  expected = np.array([np.dot(k, padded[j:j + 5]) for j in range(0, 8, 2)])
  np.testing.assert_allclose(np.asarray(S.pyr_down(x))[0, 0, :, 0], expected, rtol=1e-6)
  small = np.broadcast_to(np.float32([1, 2, 3, 4])[None, None, :, None], (1, 4, 4, 1))
  up = np.zeros(8)
  up[0::2] = [1, 2, 3, 4]
  padded = np.concatenate([up[2:0:-1], up, up[-2:-4:-1]])
  expected = np.array([np.dot(2 * k, padded[j:j + 5]) for j in range(8)])
  np.testing.assert_allclose(np.asarray(S.pyr_up(small))[0, 0, :, 0], expected, rtol=1e-6)


@pytest.mark.parametrize("res", [32, 64])
def test_pyramid_reconstruction_is_identity(res):
  x = _images(1, 4, res)
  pyramid = S.laplacian_pyramid(x, len(S.pyramid_resolutions(res, 8)))
  np.testing.assert_allclose(S.reconstruct_laplacian_pyramid(pyramid), x.astype(np.float32), atol=1e-3)
  np.testing.assert_allclose(ref.reconstruct([_nchw(p) for p in pyramid]), _nchw(x), atol=1e-3)


def test_patch_positions():
  key = jax.random.PRNGKey(3)
  pos = S.swd_patch_positions(key, (40, 32, 32, 3), descriptors_per_image=128)
  assert len(pos) == 2
  for (rows, cols), size in zip(pos, (32, 16)):
    chex.assert_shape([rows, cols], (40 * 128,))
    for v in (np.asarray(rows), np.asarray(cols)):
      # Uniform over [3, size - 3): both ends reached, nothing outside.
      assert v.min() == 3 and v.max() == size - 4
  again = S.swd_patch_positions(key, (40, 32, 32, 3), descriptors_per_image=128)
  np.testing.assert_array_equal(pos[0][0], again[0][0])
  other = S.swd_patch_positions(jax.random.PRNGKey(4), (40, 32, 32, 3), descriptors_per_image=128)
  assert not np.array_equal(pos[0][0], other[0][0])


@pytest.mark.parametrize("res", [32, 64])
def test_descriptors_match_reference(res):
  x = _images(2, 64, res)
  pos = S.swd_patch_positions(jax.random.PRNGKey(0), x.shape)
  ours = S.swd_descriptors(x, None, positions=pos)
  theirs = ref.descriptors(_nchw(x), positions=[(np.asarray(r), np.asarray(c)) for r, c in pos])
  assert len(ours) == len(theirs) == len(S.pyramid_resolutions(res))
  for a, b in zip(ours, theirs):
    chex.assert_shape(a, (64 * 128, 3, 7, 7))
    chex.assert_type(a, jnp.float32)
    np.testing.assert_allclose(a, b, atol=1e-3, rtol=0)
  # With a key, positions are those of swd_patch_positions(key).
  keyed = S.swd_descriptors(x, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(keyed[0], ours[0])


def test_descriptor_patch_content():
  """A descriptor is the (C, 7, 7) window of its own image around its centre, transposed: the
  official component (c, a, b) is the pixel at row cy + b - 3, column cx + a - 3."""
  x = _images(3, 2, 32)
  pos = [(np.full(2, 5), np.full(2, 20)), (np.full(2, 3), np.full(2, 12))]
  desc = S.swd_descriptors(x, None, descriptors_per_image=1, positions=pos)
  level0 = np.asarray(S.laplacian_pyramid(x, 2)[0])
  np.testing.assert_allclose(desc[0][1], level0[1, 2:9, 17:24, :].transpose(2, 1, 0), atol=1e-5)


def test_descriptors_follow_the_official_flat_indexing():
  """Independent loop over official `get_descriptors_for_minibatch`: nhood, chan, x, y =
  ogrid[0:N, 0:C, -H:H+1, -H:H+1]; x += column centre, y += row centre;
  idx = ((img * C + chan) * height + y) * width + x into the NCHW minibatch."""
  x = _images(2, 2, 32)
  per_image = 4
  rng = np.random.default_rng(7)
  rows, cols = rng.integers(3, 29, size=8), rng.integers(3, 29, size=8)
  ours = np.asarray(S.swd_descriptors(x, None, descriptors_per_image=per_image,
                                      positions=[(rows, cols), (np.full(8, 5), np.full(8, 6))])[0])
  level = np.transpose(np.asarray(S.laplacian_pyramid(x, 2)[0]), (0, 3, 1, 2))  # NCHW
  n_img, c, height, width = level.shape
  flat = level.reshape(-1)
  for k in range(8):
    img = k // per_image
    for chan in range(c):
      for a in range(7):       # the official x axis
        for b in range(7):     # the official y axis
          xx, yy = cols[k] + a - 3, rows[k] + b - 3
          want = flat[((img * c + chan) * height + yy) * width + xx]
          assert abs(ours[k].reshape(-1)[chan * 49 + a * 7 + b] - want) < 1e-5, (k, chan, a, b)


def test_sortable_int32_roundtrip_and_order():
  x = np.float32([3.5, -0.0, 0.0, -1e-30, 1e-30, -2.0, np.inf, -np.inf, 7.0, -7.5, 1e38, -1e38])
  keys = S._sortable_int32(jnp.asarray(x))
  np.testing.assert_array_equal(S._from_sortable_int32(keys).view(np.int32), x.view(np.int32))
  np.testing.assert_array_equal(S._from_sortable_int32(jnp.sort(keys)), np.sort(x))


def test_directions_unit_norm():
  d = S.swd_directions(jax.random.PRNGKey(0), 147, 4, 128)
  chex.assert_shape(d, (4, 147, 128))
  np.testing.assert_allclose(np.linalg.norm(np.asarray(d), axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("res", [32, 64])
def test_distance_matches_reference(res):
  a = _images(4, 64, res)
  b = np.clip(_images(5, 64, res).astype(np.int32) * 3 // 4 + 20, 0, 255).astype(np.uint8)
  desc_a = S.swd_descriptors(a, jax.random.PRNGKey(1))
  desc_b = S.swd_descriptors(b, jax.random.PRNGKey(2))
  levels = len(desc_a)
  dirs = [S.swd_directions(k, 147) for k in jax.random.split(jax.random.PRNGKey(3), levels)]
  ours = S.sliced_wasserstein_distance(desc_a, desc_b, None, directions=dirs)
  theirs = ref.swd([np.asarray(d) for d in desc_a], [np.asarray(d) for d in desc_b],
                   directions=[np.asarray(d) for d in dirs])
  chex.assert_shape(ours.per_level, (levels,))
  np.testing.assert_allclose(ours.per_level, theirs[:-1], rtol=2e-5)
  np.testing.assert_allclose(ours.average, theirs[-1], rtol=2e-5)
  # With a key the directions are swd_directions(split(key, levels)[i]).
  keyed = S.sliced_wasserstein_distance(desc_a, desc_b, jax.random.PRNGKey(3))
  np.testing.assert_allclose(keyed.per_level, ours.per_level, rtol=1e-6)
  # XLA's sort (int32 keys) and the host NumPy sort give the same distances.
  other = S.sliced_wasserstein_distance(desc_a, desc_b, None, directions=dirs,
                                        sort_on_host=jax.default_backend() != "cpu")
  np.testing.assert_allclose(other.per_level, ours.per_level, rtol=1e-6)


@pytest.mark.parametrize("sort_on_host", [True, False], ids=["host_sort", "xla_sort"])
def test_distance_in_chunks_of_directions_matches_reference(monkeypatch, sort_on_host):
  """Several chunks of directions (lax.map path, chunks spanning two repeats) give the official value."""
  monkeypatch.setattr(S, "_PROJECTION_VALUES_PER_CHUNK", 1)
  monkeypatch.setattr(S, "_MIN_DIRS_PER_CHUNK", 48)
  assert S._dirs_per_chunk(4096, 4 * 24) == 48  # 2 chunks of 48 = 2 repeats of 24 directions each
  a, b = _images(12, 32, 32), _images(13, 32, 32, noise=40.0)
  desc_a = S.swd_descriptors(a, jax.random.PRNGKey(1))
  desc_b = S.swd_descriptors(b, jax.random.PRNGKey(2))
  dirs = [S.swd_directions(k, 147, 4, 24) for k in jax.random.split(jax.random.PRNGKey(3), len(desc_a))]
  ours = S.sliced_wasserstein_distance(desc_a, desc_b, None, directions=dirs, sort_on_host=sort_on_host)
  theirs = ref.swd([np.asarray(d) for d in desc_a], [np.asarray(d) for d in desc_b],
                   directions=[np.asarray(d) for d in dirs])
  np.testing.assert_allclose(ours.per_level, theirs[:-1], rtol=2e-5)


def test_dirs_per_chunk():
  assert S._dirs_per_chunk(100, 512) == 128         # one repeat's directions per chunk
  assert S._dirs_per_chunk(2 ** 18, 512) == 128     # 2,048 images: 128 MB of projections per set
  assert S._dirs_per_chunk(2 ** 19, 512) == 64      # bounded memory for larger sets
  assert S._dirs_per_chunk(2 ** 21, 512) == 32      # 16,384 images: at least 32 directions
  assert S._dirs_per_chunk(2 ** 21, 100) == 25      # a divisor of the number of directions
  assert S._dirs_per_chunk(2 ** 21, 7) == 7


def test_host_sorted_distance_matches_numpy():
  """The threaded host sort equals a plain row sort, for fewer rows than threads too."""
  rng = np.random.default_rng(0)
  for rows in (1, 5):
    pa = rng.standard_normal((rows, 1000)).astype(np.float32)
    pb = (rng.standard_normal((rows, 1000)) * 2 + 0.5).astype(np.float32)
    expected = np.mean(np.abs(np.sort(pa, axis=1).astype(np.float64) - np.sort(pb, axis=1)))
    np.testing.assert_allclose(S._host_sorted_distance(pa, pb), expected, rtol=1e-6)


def test_distance_of_identical_sets_is_zero_and_symmetric():
  a = _images(6, 16, 32)
  b = _images(7, 16, 32)
  desc_a = S.swd_descriptors(a, jax.random.PRNGKey(0))
  desc_b = S.swd_descriptors(b, jax.random.PRNGKey(1))
  same = S.sliced_wasserstein_distance(desc_a, desc_a, jax.random.PRNGKey(2))
  np.testing.assert_array_equal(same.per_level, 0.0)
  ab = S.sliced_wasserstein_distance(desc_a, desc_b, jax.random.PRNGKey(2))
  ba = S.sliced_wasserstein_distance(desc_b, desc_a, jax.random.PRNGKey(2))
  assert np.all(np.asarray(ab.per_level) > 0)
  np.testing.assert_allclose(ab.per_level, ba.per_level, rtol=1e-6)


def test_accumulation_over_minibatches():
  x = _images(8, 16, 32)
  acc = S.SWDAccumulator(jax.random.PRNGKey(5))
  acc.feed(x[:8])
  acc.feed(x[8:])
  total = acc.descriptors()
  chex.assert_shape(total, [(16 * 128, 3, 7, 7)] * 2)
  _, k1 = jax.random.split(jax.random.PRNGKey(5))
  first = S.swd_descriptors(x[:8], k1)
  np.testing.assert_array_equal(total[1][:8 * 128], first[1])
  # Lists of per-minibatch chunks are concatenated like the official finalize_descriptors.
  chunks = [[d[:1000], d[1000:]] for d in total]
  np.testing.assert_allclose(
      S.sliced_wasserstein_distance(chunks, chunks, jax.random.PRNGKey(0)).per_level, 0.0)
  other = S.swd_descriptors(_images(9, 16, 32), jax.random.PRNGKey(6))
  np.testing.assert_allclose(S.sliced_wasserstein_distance(chunks, other, jax.random.PRNGKey(0)).per_level,
                             S.sliced_wasserstein_distance(total, other, jax.random.PRNGKey(0)).per_level,
                             rtol=1e-6)


def test_swd_ranks_sets_sensibly():
  """Two draws of one distribution are closer than a draw and uniform noise."""
  real_a, real_b = _images(10, 64, 32, noise=3.0), _images(11, 64, 32, noise=3.0)
  noise = np.random.default_rng(0).integers(0, 256, real_b.shape).astype(np.uint8)
  key = jax.random.PRNGKey(0)
  near = S.swd(real_a, real_b, key)
  far = S.swd(real_a, noise, key)
  chex.assert_shape([near.per_level, far.per_level], (2,))
  np.testing.assert_allclose(near.average, np.mean(near.per_level), rtol=1e-6)
  assert np.all(np.asarray(far.per_level) > 2 * np.asarray(near.per_level))


def test_metric_names():
  assert S.swd_metric_names(128) == ["SWDx1e3_128", "SWDx1e3_64", "SWDx1e3_32", "SWDx1e3_16", "SWDx1e3_avg"]
  assert S.pyramid_resolutions(32) == [32, 16]
  assert S.pyramid_resolutions(64, min_res=32) == [64, 32]


def test_bad_inputs():
  with pytest.raises(ValueError, match="NCHW"):
    S.swd_descriptors(np.zeros((2, 3, 32, 32), np.uint8), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="divisible"):
    S.swd_descriptors(np.zeros((2, 32, 33, 3), np.uint8), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="min_res"):
    S.swd_descriptors(np.zeros((2, 8, 8, 3), np.uint8), jax.random.PRNGKey(0))
  d = S.swd_descriptors(_images(0, 16, 32), jax.random.PRNGKey(0))
  e = S.swd_descriptors(_images(0, 8, 32), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="equal shapes"):
    S.sliced_wasserstein_distance(d, e, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="levels"):
    S.sliced_wasserstein_distance(d, d[:1], jax.random.PRNGKey(0))
  x = _images(0, 2, 32)
  pos = S.swd_patch_positions(jax.random.PRNGKey(0), x.shape, descriptors_per_image=4)
  bad = [(np.asarray(pos[0][0]).copy(), pos[0][1]), pos[1]]
  bad[0][0][1] = 29  # the 7x7 neighbourhood would leave the 32x32 image
  with pytest.raises(ValueError, match="centres must lie"):
    S.swd_descriptors(x, None, descriptors_per_image=4, positions=bad)
