"""Pixel scalings of the official scripts and their inverse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.data import preprocess

X = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
EXPECTED = {  # written from the official formulas
    "unit": X / 255.0,
    "cifar_official": (X - 127.5) / 128.0,
    "svhn_official": (X - 127.5) / 127.5,
    "tanh": X / 127.5 - 1.0,
}


@pytest.mark.parametrize("scale", sorted(EXPECTED))
def test_to_float_and_back(scale):
  y = preprocess.to_float(X, scale)
  assert y.dtype == np.float32 and isinstance(y, np.ndarray)
  np.testing.assert_allclose(y, EXPECTED[scale], rtol=0, atol=1e-6)
  np.testing.assert_array_equal(preprocess.to_uint8(y, scale), X)
  lo, hi = preprocess.value_range(scale)
  np.testing.assert_allclose([lo, hi], [EXPECTED[scale].min(), EXPECTED[scale].max()], atol=1e-7)


def test_jax_under_jit_and_clipping():
  y = jax.jit(lambda x: preprocess.to_float(x, "cifar_official"))(jnp.asarray(X))
  assert y.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(y), EXPECTED["cifar_official"], atol=1e-6)
  # tanh output beyond the uint8 range is clipped, not wrapped.
  np.testing.assert_array_equal(preprocess.to_uint8(np.array([-1.0, 1.0, 2.0]), "cifar_official"),
                                [0, 255, 255])


def test_errors():
  with pytest.raises(ValueError, match="data.scale='zero_one' is not one of"):
    preprocess.to_float(X, "zero_one")
  with pytest.raises(TypeError, match="expects uint8"):
    preprocess.to_float(X.astype(np.float32), "unit")
