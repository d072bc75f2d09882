"""RP-GAN's random projections (models/rpgan.py) against NumPy re-derivations of rproj.py / disc.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.models import rpgan as rp


def _rproj_global_state(seed, num, size, channels):
  """filts/rproj.py's loop, written out, on NumPy's global RandomState seeded with `seed`."""
  np.random.seed(seed)
  out = {}
  for j in range(num):
    pfi = np.random.normal(size=(size, size, channels, 1))
    pfi = np.float32(pfi)
    pfi = pfi / np.sqrt(np.sum(pfi * pfi, axis=(0, 1, 2)))
    out[f"p{j}"] = pfi
    out[f"s{j}"] = 2
  out["nfilt"] = num
  return out


def test_bank_is_rproj_on_a_seeded_random_state_with_unit_norm_filters():
  bank = rp.draw_projections(7, 5, 8, 3)
  assert bank.shape == (8, 8, 3, 5) and bank.dtype == np.float32
  want = _rproj_global_state(7, 5, 8, 3)
  for k in range(5):
    np.testing.assert_array_equal(bank[..., k], want[f"p{k}"][..., 0])
  np.testing.assert_allclose(np.sqrt((bank.astype(np.float64) ** 2).sum(axis=(0, 1, 2))), 1.0,
                             rtol=1e-6)
  assert not np.allclose(bank, rp.draw_projections(8, 5, 8, 3))   # the seed matters
  np.testing.assert_array_equal(bank, rp.draw_projections(7, 5, 8, 3))   # and fixes the bank
  # The first k filters do not depend on K (drawn one after the other).
  np.testing.assert_array_equal(rp.draw_projections(7, 2, 8, 3), bank[..., :2])


def test_official_filter_files_load(tmp_path):
  np.savez(tmp_path / "K4.npz", **_rproj_global_state(3, 4, 8, 3))
  bank, stride = rp.load_projections(tmp_path / "K4.npz")
  assert stride == 2 and bank.shape == (8, 8, 3, 4)
  np.testing.assert_array_equal(bank, rp.draw_projections(3, 4, 8, 3))
  bad = _rproj_global_state(3, 2, 8, 3)
  bad["s1"] = 1
  np.savez(tmp_path / "mixed.npz", **bad)
  with pytest.raises(ValueError, match="differ in shape .* or stride"):
    rp.load_projections(tmp_path / "mixed.npz")
  two = _rproj_global_state(3, 1, 8, 3)
  two["p0"] = np.zeros((8, 8, 3, 2), np.float32)
  np.savez(tmp_path / "two.npz", **two)
  with pytest.raises(ValueError, match="one output channel per projection"):
    rp.load_projections(tmp_path / "two.npz")
  np.savez(tmp_path / "other.npz", w=np.zeros(3))
  with pytest.raises(ValueError, match="no 'nfilt' entry"):
    rp.load_projections(tmp_path / "other.npz")
  with pytest.raises(FileNotFoundError, match="projection_file"):
    rp.load_projections(tmp_path / "missing.npz")


def _numpy_projection(x, filt, stride):
  """disc.py: tf.pad by (f - s) // 2 on both sides, then a VALID stride-s conv, one filter."""
  f = filt.shape[0]
  p = (f - stride) // 2
  xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  out = (xp.shape[1] - f) // stride + 1
  y = np.zeros((x.shape[0], out, out))
  for i in range(out):
    for j in range(out):
      y[:, i, j] = np.einsum("nabc,abc->n", xp[:, i * stride:i * stride + f,
                                                  j * stride:j * stride + f], filt)
  return y


@pytest.mark.parametrize("side,size,stride", [(16, 8, 2), (12, 5, 3)])
def test_one_convolution_with_k_channels_is_k_separate_projections(side, size, stride):
  rng = np.random.RandomState(0)
  x = rng.uniform(-1, 1, (3, side, side, 3)).astype(np.float32)
  bank = rp.draw_projections(1, 4, size, 3)
  got = np.asarray(rp.project(jnp.asarray(x), jnp.asarray(bank), stride))
  side_out = rp.projected_side(side, size, stride)
  assert got.shape == (3, side_out, side_out, 4)
  for k in range(4):
    np.testing.assert_allclose(got[..., k], _numpy_projection(x, bank[..., k], stride),
                               rtol=1e-5, atol=1e-5)


def test_official_projection_sizes():
  assert rp.projection_padding(8, 2) == 3
  assert rp.projected_side(64, 8, 2) == 32     # faces: 64x64x3 -> 32x32x1
  assert rp.projected_side(128, 8, 2) == 64    # dogs
  assert rp.projected_side(32, 8, 2) == 16     # CIFAR-10
