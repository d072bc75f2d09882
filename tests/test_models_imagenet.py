"""The ImageNet networks (models/imagenet.py) against NumPy re-derivations of the official TF ops."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from itgan_jax import models
from itgan_jax.models import imagenet as m
from itgan_jax.variants.imagenet import row_keys


def _np_same_pads(n, k, s):
  out = -(-n // s)
  total = max((out - 1) * s + k - n, 0)
  return total // 2, total - total // 2


def _np_conv_same(x, w, s):
  """TF conv2d 'SAME': zero pad (before = total // 2), cross-correlate, stride s."""
  k = w.shape[0]
  (pt, pb), (pl, pr) = _np_same_pads(x.shape[1], k, s), _np_same_pads(x.shape[2], k, s)
  xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho, wo = -(-x.shape[1] // s), -(-x.shape[2] // s)
  out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
  for u in range(ho):
    for v in range(wo):
      patch = xp[:, u * s:u * s + k, v * s:v * s + k, :]
      out[:, u, v] = np.einsum("nabi,abio->no", patch, w)
  return out


def _np_conv_transpose_same(x, w, s):
  """TF conv2d_transpose 'SAME' as a scatter: y[u s + a - p, v s + b - p] += x[u, v] w[a, b]
  (w: (k, k, out, in); p = the SAME padding before of the forward conv on the output size)."""
  n, h, wd, _ = x.shape
  k = w.shape[0]
  big = (h * s, wd * s)
  p = (_np_same_pads(big[0], k, s)[0], _np_same_pads(big[1], k, s)[0])
  y = np.zeros((n, big[0], big[1], w.shape[2]))
  for u in range(h):
    for v in range(wd):
      for a in range(k):
        for b in range(k):
          r, c = u * s + a - p[0], v * s + b - p[1]
          if 0 <= r < big[0] and 0 <= c < big[1]:
            y[:, r, c] += x[:, u, v] @ w[a, b].T
  return y


def test_tf_same_padding_puts_the_extra_pixel_after():
  assert m.tf_same_padding(128, 3, 2) == (0, 1)
  assert m.tf_same_padding(16, 3, 1) == (1, 1)
  assert m.tf_same_padding(8, 5, 2) == (1, 2)
  assert m.tf_same_padding(8, 5, 1) == (2, 2)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_is_tf_same_conv(stride):
  x = np.random.RandomState(0).randn(2, 8, 8, 3).astype(np.float32)
  layer = m.TFConv(5, stride=stride)
  v = layer.init(jax.random.PRNGKey(1), x)
  w = np.asarray(v["params"]["kernel"], np.float64)
  assert np.abs(w).max() <= 2 * 0.02 + 1e-7  # truncated at two standard deviations
  v = {"params": {"kernel": v["params"]["kernel"], "bias": jnp.arange(5.0)}}
  got = layer.apply(v, x)
  chex.assert_shape(got, (2, 8 // stride, 8 // stride, 5))
  np.testing.assert_allclose(got, _np_conv_same(x, w, stride) + np.arange(5.0), atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_deconv_is_tf_conv2d_transpose_same(stride):
  x = np.random.RandomState(2).randn(2, 4, 4, 3).astype(np.float32)
  layer = m.TFDeconv(6, stride=stride, stddev=0.5, bias_init=-0.45)
  v = layer.init(jax.random.PRNGKey(3), x)
  w = np.asarray(v["params"]["kernel"], np.float64)
  chex.assert_shape(w, (5, 5, 6, 3))  # TF layout (k, k, out, in)
  np.testing.assert_allclose(v["params"]["bias"], np.full(6, -0.45))
  got = layer.apply(v, x)
  chex.assert_shape(got, (2, 4 * stride, 4 * stride, 6))
  np.testing.assert_allclose(got, _np_conv_transpose_same(x, w, stride) - 0.45, atol=1e-5)


@pytest.mark.parametrize("shape", [(6, 3, 3, 4), (6, 8)])
def test_batch_norm_cross_matches_numpy(shape):
  x = np.random.RandomState(4).randn(*shape).astype(np.float32) * 3 + 1
  layer = m.BatchNormCross()
  v = layer.init(jax.random.PRNGKey(5), x)
  p = {k: np.asarray(val, np.float64) for k, val in v["params"].items()}
  assert set(p) == {"gamma0", "beta0", "gamma1", "beta1"}
  x4 = x.reshape(shape[0], 1, 1, shape[-1]) if x.ndim == 2 else x.astype(np.float64)
  c, n = shape[-1] // 2, shape[0] // 2
  want = np.empty_like(x4, dtype=np.float64)
  for part, rows in ((0, slice(0, n)), (1, slice(n, None))):
    ch = x4[..., part * c:(part + 1) * c].astype(np.float64)
    mean, var = ch[rows].mean(axis=(0, 1, 2)), ch[rows].var(axis=(0, 1, 2))
    want[..., part * c:(part + 1) * c] = ((ch - mean) / np.sqrt(var + 1e-5) * p[f"gamma{part}"]
                                          + p[f"beta{part}"])
  got = layer.apply(v, x)
  chex.assert_shape(got, shape)
  np.testing.assert_allclose(got, want.reshape(shape), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="even number of rows"):
    layer.apply(v, x[:5])


def test_gan_logit_is_lse_of_classes_minus_fake_logit():
  logits = np.random.RandomState(6).randn(5, 4) * 10
  want = np.log(np.exp(logits[:, :3]).sum(1)) - logits[:, 3]
  np.testing.assert_allclose(m.gan_logit(jnp.asarray(logits, jnp.float32)), want, rtol=1e-5)


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(name="imagenet", z_dim=8192, z_dist="uniform_pm1", gf_dim=64,
                                     df_dim=64, vbn_ref_size=16, d_input_noise=0.1,
                                     minibatch_kernels=300, minibatch_dim=50))
  c.update(kw)
  return c


def test_full_size_parameter_shapes_are_the_official_ones():
  """Shapes only (jax.eval_shape): the official layer sizes at gf = df = 64, 128x128."""
  g, d = models.build(_cfg(), 1000, (128, 128, 3))
  k = jax.random.PRNGKey(0)
  z = jax.ShapeDtypeStruct((2, 8192), jnp.float32)
  gv = jax.eval_shape(lambda z: g.init({"params": k, "vbn": k, "noise": k}, z), z)
  gp = gv["params"]
  assert gp["h0_lin"]["kernel"].shape == (8192, 4 * 4 * 512)
  assert gp["h1"]["kernel"].shape == (5, 5, 256, 512 + 64)
  assert gp["h2"]["kernel"].shape == (5, 5, 128, 256 + 64)
  assert gp["h3"]["kernel"].shape == (5, 5, 64, 128 + 32)
  assert gp["h4"]["kernel"].shape == (5, 5, 64, 64 + 16)
  assert gp["h5"]["kernel"].shape == (5, 5, 64, 64 + 8)
  assert gp["h6"]["kernel"].shape == (5, 5, 3, 64 + 8)  # official `eighth`, not `sixteenth`
  assert [gp[f"vbn_{i}"]["gamma"].shape[0] for i in range(6)] == [512, 256, 128, 64, 64, 64]
  ref = gv["vbn_ref"]
  assert ref["z"].shape == (16, 8192) and ref["h5z"].shape == (16, 128, 128, 8)
  x = jax.ShapeDtypeStruct((4, 128, 128, 3), jnp.float32)
  (logits, (feats,)), dv = jax.eval_shape(
      lambda x: d.init_with_output({"params": k, "noise": k}, x), x)
  dp = dv["params"]
  assert [dp[f"h{i}_conv"]["kernel"].shape[-1] for i in range(7)] == [64, 128, 256, 256, 256,
                                                                     512, 512]
  assert dp["h7"]["kernel"].shape == (4 * 4 * 512, 2560)
  assert dp["minibatch"]["Dense_0"]["kernel"].shape == (2560, 300 * 50)
  assert dp["indiv_logits"]["kernel"].shape == (2560 + 600, 1001)
  assert logits.shape == (4, 1001) and feats.shape == (4, 2560)


def test_model_family_rejects_bad_shapes_and_keys():
  with pytest.raises(ValueError, match="multiple of 32"):
    models.build(_cfg(), 10, (100, 100, 3))
  with pytest.raises(ValueError, match="df_dim=5 must be even"):
    models.build(_cfg(df_dim=5), 10, (32, 32, 3))
  with pytest.raises(ValueError, match="gf_dim=0"):
    models.build(_cfg(gf_dim=0), 10, (32, 32, 3))


@pytest.fixture(scope="module")
def tiny_models():
  g, d = models.build(_cfg(z_dim=16, gf_dim=4, df_dim=4, vbn_ref_size=2, minibatch_kernels=6,
                           minibatch_dim=3), 3, (32, 32, 3))
  return g, d


def test_generator_shapes_noise_and_reference(tiny_models):
  g, _ = tiny_models
  z = jax.random.uniform(jax.random.PRNGKey(0), (3, 16), minval=-1, maxval=1)
  k = jax.random.PRNGKey

  @jax.jit
  def run(z):  # one compiled program for every case below
    v = g.init({"params": k(1), "vbn": k(2), "noise": k(3)}, z)
    out = g.apply(v, z, rngs={"noise": k(4)})
    again = g.apply(v, z, rngs={"noise": k(5)})
    sample = g.apply(v, z, row_keys=row_keys(z))
    reversed_batch = g.apply(v, z[::-1], row_keys=row_keys(z[::-1]))
    return v, out, again, sample, reversed_batch
  v, out, again, a, b = run(z)
  assert [v["vbn_ref"][f"h{i}z"].shape[-1] for i in range(6)] == [4, 4, 2, 1, 1, 1]
  chex.assert_shape(out, (3, 32, 32, 3))
  chex.assert_type(out, jnp.float32)
  assert np.all(np.abs(np.asarray(out)) <= 1.0)
  assert not np.allclose(out, again)  # fresh per-pixel noise changes the images
  # Samples: each row's noise from its own latent, and VBN normalises each live row with its own
  # and the reference statistics, so a row does not depend on the others.
  np.testing.assert_allclose(a[::-1], b, atol=1e-6)
  assert not np.allclose(a, out)


def test_discriminator_logits_follow_the_joint_minibatch_features(tiny_models):
  """D's logits = linear(concat(f, f_real, f_fake)) with the joint minibatch sums (NumPy)."""
  _, d = tiny_models
  x = np.random.RandomState(7).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)

  @jax.jit
  def run(x):
    v = d.init({"params": jax.random.PRNGKey(8), "noise": jax.random.PRNGKey(9)}, x)
    return v, d.apply(v, x, train=False), d.apply(v, x, rngs={"noise": jax.random.PRNGKey(10)})
  v, (logits, (f,)), (noisy, _) = run(x)
  chex.assert_shape(logits, (4, 4))
  f = np.asarray(f, np.float64)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"])
  mb = p["minibatch"]["Dense_0"]
  act = (f @ mb["kernel"] + mb["bias"]).reshape(4, 6, 3)
  dist = np.abs(act[:, :, :, None] - act.transpose(1, 2, 0)[None]).sum(2)  # (i, b, j)
  c = np.exp(-dist) * (1 - np.eye(4))[:, None, :]
  f_real, f_fake = c[:, :, :2].sum(2) / (2 * 3), c[:, :, 2:].sum(2) / (2 * 3)
  feats = np.concatenate([f, f_real, f_fake], axis=1)
  want = feats @ p["indiv_logits"]["kernel"] + p["indiv_logits"]["bias"]
  np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)
  # Train mode adds the input noise (rng stream 'noise').
  assert not np.allclose(noisy, logits)
