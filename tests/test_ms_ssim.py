"""MS-SSIM vs an independent NumPy/SciPy (fftconvolve, float64) version of the official metric."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.metrics import ms_ssim as M
from tests.reference import ms_ssim_numpy as ref


def _structured(seed: int, n: int, res: int, noise: float) -> np.ndarray:
  """Smooth random colour field (blocks, blurred by upsampling) plus noise, uint8 NHWC."""
  rng = np.random.default_rng(seed)
  base = np.kron(rng.uniform(0, 255, (n, res // 8, res // 8, 3)), np.ones((1, 8, 8, 1)))
  ramp = np.linspace(-40, 40, res)[None, None, :, None]
  return np.clip(base + ramp + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def _pairs(res: int):
  rng = np.random.default_rng(res)
  clean = _structured(res, 8, res, 5.0)
  noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
  return {
      "random": (rng.integers(0, 256, (8, res, res, 3), dtype=np.uint8),
                 rng.integers(0, 256, (8, res, res, 3), dtype=np.uint8)),
      "structured": (clean, noisy),
      "low_contrast": (clean, (clean // 3 + 100).astype(np.uint8)),
      "independent_structured": (clean, _structured(res + 1, 8, res, 5.0)),
  }


@pytest.mark.parametrize("res", [32, 64])
@pytest.mark.parametrize("kind", ["random", "structured", "low_contrast", "independent_structured"])
def test_matches_reference(res, kind):
  a, b = _pairs(res)[kind]
  ours = M.ms_ssim(a, b)
  chex.assert_shape(ours, (8,))
  chex.assert_type(ours, jnp.float32)
  np.testing.assert_allclose(ours, ref.ms_ssim(a, b), atol=1e-5, rtol=0)


def test_float_inputs_in_uint8_range_give_the_same_values():
  a, b = _pairs(32)["structured"]
  np.testing.assert_allclose(M.ms_ssim(a.astype(np.float32), b.astype(np.float32)), M.ms_ssim(a, b),
                             atol=1e-7)


def test_reference_cases_are_not_degenerate():
  """The structured cases span the [0, 1] range, so the comparison above is informative."""
  scores = {k: ref.ms_ssim(*v) for k, v in _pairs(32).items()}
  assert np.all(scores["structured"] > 0.3) and np.all(scores["structured"] < 0.99)
  assert np.all(scores["independent_structured"] < scores["structured"])


@pytest.mark.parametrize("res", [16, 32, 64])
def test_identical_pairs_score_one(res):
  x = _structured(1, 8, res, 10.0)
  np.testing.assert_allclose(M.ms_ssim(x, x), 1.0, atol=1e-6)


def test_negative_means_are_clipped_to_zero():
  """Inverted images have negative cs at the first scale; the official clips it, giving score 0."""
  x = _structured(2, 8, 32, 5.0)
  y = 255 - x
  _, cs = ref.ssim_and_cs(x.astype(np.float64), y.astype(np.float64))
  assert np.all(cs < 0)
  np.testing.assert_array_equal(M.ms_ssim(x, y), 0.0)
  assert not np.any(np.isnan(np.asarray(M.ms_ssim(x, y))))


def test_gaussian_window_factorises_the_official_2d_window():
  """Outer product of the 1-D window equals MATLAB fspecial (half-integer offsets for even sizes)."""
  for size, sigma in [(11, 1.5), (8, 8 * 1.5 / 11), (4, 4 * 1.5 / 11), (1, 1.5 / 11)]:
    radius = size // 2
    offset, stop = (0.5, radius) if size % 2 == 0 else (0.0, radius + 1)
    y, x = np.mgrid[offset - radius:stop, offset - radius:stop]
    g = np.exp(-(x ** 2 + y ** 2) / (2.0 * sigma ** 2))
    g1 = M.gaussian_window_1d(size, sigma)
    np.testing.assert_allclose(np.outer(g1, g1), g / g.sum(), rtol=1e-12)


def test_options_match_reference():
  a, b = _pairs(32)["structured"]
  for kwargs in [dict(filter_size=0), dict(weights=(0.2, 0.3, 0.5)), dict(filter_size=7, filter_sigma=1.0),
                 dict(k1=0.02, k2=0.05, max_val=200.0, weights=(0.5, 0.5))]:
    np.testing.assert_allclose(M.ms_ssim(a, b, **kwargs), ref.ms_ssim(a, b, **kwargs), atol=1e-5,
                               err_msg=str(kwargs))


def test_consecutive_pairs():
  x = np.concatenate([_structured(3, 8, 32, 5.0), _structured(4, 8, 32, 30.0)])
  got = M.ms_ssim_consecutive_pairs(x)
  chex.assert_shape(got, ())
  np.testing.assert_allclose(got, np.mean(ref.ms_ssim(x[0::2], x[1::2])), atol=1e-6)
  np.testing.assert_allclose(got, ref.ms_ssim_consecutive_pairs(x), atol=1e-6)


def test_bad_inputs():
  x = np.zeros((4, 32, 32, 3), np.uint8)
  with pytest.raises(ValueError, match="same shape"):
    M.ms_ssim(x, x[:2])
  with pytest.raises(ValueError, match="divisible"):
    M.ms_ssim(np.zeros((2, 40, 40, 3), np.uint8), np.zeros((2, 40, 40, 3), np.uint8))
  with pytest.raises(ValueError, match="NCHW"):
    M.ms_ssim(np.zeros((2, 3, 32, 32), np.uint8), np.zeros((2, 3, 32, 32), np.uint8))
  with pytest.raises(ValueError, match="even number"):
    M.ms_ssim_consecutive_pairs(x[:3])
