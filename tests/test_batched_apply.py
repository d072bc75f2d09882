"""metrics.batched_apply: padded, data-parallel batches equal one plain apply of the module."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.metrics import batched_apply


class _TwoHeads(nn.Module):
  """A stand-in feature network: a dict of a (N, 5) and a (N, 2, 3) output of uint8 images."""

  @nn.compact
  def __call__(self, images):
    x = images.astype(jnp.float32).reshape(images.shape[0], -1) / 255.0
    h = nn.Dense(5)(x)
    return {"features": jnp.tanh(h), "grid": nn.Dense(6)(h).reshape(-1, 2, 3)}


@pytest.fixture(scope="module")
def module_and_params():
  module = _TwoHeads()
  params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 1), jnp.uint8))["params"]
  return module, params


@pytest.mark.parametrize("num_devices, batch_size, want_batch", [(1, 7, 7), (8, 12, 16),
                                                                  (3, 1, 3)])
def test_batches_equal_one_plain_apply(module_and_params, num_devices, batch_size, want_batch):
  module, params = module_and_params
  images = np.random.default_rng(1).integers(0, 256, size=(37, 4, 4, 1), dtype=np.uint8)
  apply = batched_apply.BatchedApply(module, params, batch_size=batch_size,
                                     devices=jax.devices()[:num_devices])
  assert apply.batch_size == want_batch and len(apply.devices) == num_devices
  got = apply(images, ("grid", "features"))
  want = module.apply({"params": params}, images)
  assert list(got) == ["grid", "features"]
  for name in got:
    assert got[name].dtype == np.float32 and got[name].shape == want[name].shape
    np.testing.assert_allclose(got[name], np.asarray(want[name]), rtol=1e-6, atol=1e-6)


def test_no_images_give_empty_outputs_with_the_modules_shapes(module_and_params):
  module, params = module_and_params
  apply = batched_apply.BatchedApply(module, params, batch_size=4, devices=jax.devices()[:2])
  got = apply(np.zeros((0, 4, 4, 1), np.uint8), ("features", "grid"))
  assert got["features"].shape == (0, 5) and got["grid"].shape == (0, 2, 3)
  assert got["features"].dtype == np.float32


def test_batch_size_below_one_is_refused(module_and_params):
  module, params = module_and_params
  with pytest.raises(ValueError, match="batch_size must be >= 1"):
    batched_apply.BatchedApply(module, params, batch_size=0)
