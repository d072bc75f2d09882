"""The conv model family (official CIFAR/SVHN networks, MNIST 28x28 adaptation)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.models import conv

# RBG keys: these tests need random weights, not particular ones, and threefry's per-shape compile
# would dominate their run time on CPU.
_key = lambda i: jax.random.key(i, impl="unsafe_rbg")
RNGS = {"params": _key(0), "noise": _key(1), "dropout": _key(2), "vbn": _key(3)}


def test_half_deconv_is_the_adjoint_of_a_half_padded_stride_2_conv():
  """Official Deconv2DLayer = AbstractConv2d_gradInputs(border_mode='half', subsample=2)."""
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(2, 4, 4, 3), jnp.float32)
  layer = conv.HalfDeconv(5)
  variables = layer.init(_key(0), x)
  w = variables["params"]["kernel"]  # (5, 5, in=3, out=5)
  assert abs(float(jnp.std(w)) - 0.05) < 0.01
  out = layer.apply(variables, x)
  chex.assert_shape(out, (2, 8, 8, 5))
  # Forward conv from the 8x8x5 output space to 4x4x3, kernel with in/out swapped, padding 2.
  fwd = lambda y: jax.lax.conv_general_dilated(y, jnp.transpose(w, (0, 1, 3, 2)), (2, 2),
                                               ((2, 2), (2, 2)),
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  _, vjp = jax.vjp(fwd, jnp.zeros((2, 8, 8, 5)))
  np.testing.assert_allclose(out, vjp(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side,channels,out_c", [(32, (512, 256, 128), 3), (28, (256, 128), 1)])
def test_generator_and_discriminator_shapes(side, channels, out_c):
  g = conv.ConvGenerator(start_size=side // 2 ** len(channels), channels=channels,
                         out_channels=out_c)
  z = jax.ShapeDtypeStruct((4, 100), jnp.float32)
  gv = jax.eval_shape(lambda z: g.init(RNGS, z), z)
  assert jax.eval_shape(lambda v, z: g.apply(v, z), gv, z).shape == (4, side, side, out_c)
  # Official: BN on the dense layer's s*s*c0 units (before the reshape), learned bias only.
  s = side // 2 ** len(channels)
  assert gv["params"]["BatchStatNorm_0"]["bias"].shape == (s * s * channels[0],)
  assert "kernel" in gv["params"]["Dense_0"] and "bias" not in gv["params"]["Dense_0"]
  d = conv.ConvDiscriminator(minibatch_kernels=100, input_noise=0.2, input_dropout=0.0,
                             first_pad=conv.first_conv_padding(side))
  x = jax.ShapeDtypeStruct((6, side, side, out_c), jnp.float32)
  dv = jax.eval_shape(lambda x: d.init(RNGS, x), x)
  logits, (pooled,) = jax.eval_shape(lambda v, x: d.apply(v, x, train=False), dv, x)
  assert logits.shape == (6, 10) and pooled.shape == (6, 192)
  assert dv["params"]["WNDense_0"]["kernel"].shape == (292, 10)  # 192 pooled + 100 MD features


def test_first_conv_padding():
  assert conv.first_conv_padding(32) == 1 and conv.first_conv_padding(28) == 3
  with pytest.raises(ValueError, match="side 32"):
    conv.first_conv_padding(27)


@pytest.mark.parametrize("norm,independent", [("vbn", True), ("vbnlp", True), ("batch", False)])
def test_generator_examples_are_independent_exactly_when_no_batch_norm(norm, independent):
  """VBN (the paper's point): a sample depends on its own z and the fixed reference batch only."""
  g = conv.ConvGenerator(start_size=4, channels=(8, 4), out_channels=1, norm=norm, num_ref=5)
  rng = np.random.RandomState(5)
  z = jnp.asarray(rng.uniform(size=(6, 10)), jnp.float32)
  z2 = z.at[0].set(jnp.asarray(rng.uniform(size=10), jnp.float32))
  variables = g.init(RNGS, z)
  out, out2 = g.apply(variables, z), g.apply(variables, z2)
  assert ("vbn_ref" in variables) == norm.startswith("vbn")
  chex.assert_shape(out, (6, 16, 16, 1))
  others_unchanged = np.allclose(out2[1:], out[1:], rtol=1e-5, atol=1e-6)
  assert others_unchanged == independent


def test_vbn_generator_reference_batch_is_fixed_and_has_the_latent_distribution():
  g = conv.ConvGenerator(start_size=4, channels=(8, 4), out_channels=1, norm="vbn", num_ref=64,
                         ref_dist="uniform01")
  ref = np.asarray(g.init(RNGS, jnp.zeros((2, 10)))["vbn_ref"]["z"])
  assert ref.shape == (64, 10) and ref.min() >= 0 and ref.max() <= 1 and ref.std() > 0.2
  with pytest.raises(ValueError, match="model.g_norm"):
    conv.ConvGenerator(norm="layer").init(RNGS, jnp.zeros((2, 10)))
