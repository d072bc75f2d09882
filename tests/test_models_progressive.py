"""ProGAN networks (itgan_jax/models/progressive.py): shapes, one parameter tree for every level, the
fade-in of G and D, forward passes against a NumPy re-derivation of Theano `G_paper` / `D_paper`,
and the registry entry `model.name='progressive'`."""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from itgan_jax import models
from itgan_jax.models import progressive as prog
from tests.reference import progan_numpy as ref

_key = lambda i: jax.random.key(i, impl="unsafe_rbg")
RNGS = {"params": _key(0), "vbn": _key(1)}
RES, LATENT, N = 16, 8, 4
SMALL = dict(fmap_base=32, fmap_max=16)  # nf(0) = nf(1) = 16, nf(2) = 8, nf(3) = 4
SQRT2 = math.sqrt(2.0)


def _gen(**kw):
  return prog.ProgressiveGenerator(RES, num_channels=3, latent_dim=LATENT, **{**SMALL, **kw})


def _disc(**kw):
  return prog.ProgressiveDiscriminator(RES, num_channels=3, **{**SMALL, **kw})


def _z(seed=0, n=N):
  return jnp.asarray(np.random.RandomState(seed).randn(n, LATENT), jnp.float32)


def _x(level, seed=0, n=N):
  side = 4 * 2 ** level
  return jnp.asarray(np.random.RandomState(seed).randn(n, side, side, 3), jnp.float32)


@functools.lru_cache(maxsize=None)
def _init(module, shape):
  """module.init on a random input, once per (module, input shape)."""
  return module.init(RNGS, jnp.asarray(np.random.RandomState(0).randn(*shape), jnp.float32))


def _jitter(variables, seed, scale=0.1):
  """Every parameter moved by N(0, scale^2) noise (non-zero biases, gains != 1)."""
  leaves, tree = jax.tree_util.tree_flatten(variables["params"])
  rng = np.random.RandomState(seed)
  leaves = [a + jnp.asarray(scale * rng.randn(*a.shape), a.dtype) for a in leaves]
  return {**variables, "params": jax.tree_util.tree_unflatten(tree, leaves)}


def _perturb(variables, name, seed=9):
  params = dict(variables["params"])
  params[name] = jax.tree_util.tree_map(
      lambda a: a + jnp.asarray(np.random.RandomState(seed).randn(*a.shape), a.dtype), params[name])
  return {**variables, "params": params}


def _np_params(variables):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])


def _shapes(tree):
  return jax.tree_util.tree_map(lambda a: a.shape, tree)


# ------------------------------------------------------------------------------------------------
def test_output_shapes_per_level_and_widths():
  g, d = _gen(), _disc()
  gv = jax.eval_shape(lambda z: g.init(RNGS, z), _z())
  dv = jax.eval_shape(lambda x: d.init(RNGS, x), _x(2))
  for level in range(3):
    side = 4 * 2 ** level
    img = jax.eval_shape(lambda v, z, level=level: g.apply(v, z, level=level, alpha=0.5), gv, _z())
    chex.assert_shape(img, (N, side, side, 3))
    logits, (feats,) = jax.eval_shape(
        lambda v, x, level=level: d.apply(v, x, level=level, alpha=0.5), dv, _x(level))
    chex.assert_shape(logits, (N, 1))
    chex.assert_shape(feats, (N, 16))
    assert logits.dtype == jnp.float32
  chex.assert_shape(jax.eval_shape(g.apply, gv, _z()), (N, RES, RES, 3))  # level None = L
  p = gv["params"]
  # G block at 2^r uses nf(r-1): 4x4 -> 16, 8x8 -> 8, 16x16 -> 4; dense to 4*4*nf(1), no bias.
  chex.assert_shape(p["block0"]["dense"]["kernel"], (LATENT, 16 * 16))
  assert "bias" not in p["block0"]["dense"] and p["block0"]["bias"].shape == (16,)
  chex.assert_shape(p["block1"]["conv0"]["kernel"], (3, 3, 16, 8))
  chex.assert_shape(p["block2"]["conv1"]["kernel"], (3, 3, 4, 4))
  chex.assert_shape(p["to_rgb2"]["conv"]["kernel"], (1, 1, 4, 3))
  q = dv["params"]
  # D block at 2^r: conv nf(r-1) then nf(r-2); fromRGB at 2^r: nf(r-1); head: +1 mbstd channel.
  chex.assert_shape(q["from_rgb2"]["conv"]["kernel"], (1, 1, 3, 4))
  chex.assert_shape(q["block2"]["conv0"]["conv"]["kernel"], (3, 3, 4, 4))
  chex.assert_shape(q["block2"]["conv1"]["conv"]["kernel"], (3, 3, 4, 8))
  chex.assert_shape(q["block1"]["conv1"]["conv"]["kernel"], (3, 3, 8, 16))
  chex.assert_shape(q["head_conv0"]["conv"]["kernel"], (3, 3, 17, 16))
  chex.assert_shape(q["head_conv1"]["conv"]["kernel"], (4, 4, 16, 16))
  chex.assert_shape(q["out"]["kernel"], (16, 1))


@pytest.mark.parametrize("kw", [{}, {"norm": "batch", "activation": "relu"}, {"norm": "vbn"}])
def test_generator_parameter_tree_is_the_same_whatever_level(kw):
  g = _gen(num_ref=3, **kw)
  full = jax.eval_shape(lambda z: g.init(RNGS, z), _z())
  for level in range(3):
    tree = jax.eval_shape(lambda z, level=level: g.init(RNGS, z, level=level), _z())
    assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(full)
    assert _shapes(tree) == _shapes(full)
  names = set(full["params"])
  assert names == {"block0", "block1", "block2", "to_rgb0", "to_rgb1", "to_rgb2"}


@pytest.mark.parametrize("kw", [{}, {"layer_norm": True, "use_wscale": False},
                                {"minibatch_kernels": 3}])
def test_discriminator_parameter_tree_is_the_same_whatever_level(kw):
  d = _disc(**kw)
  full = jax.eval_shape(lambda x: d.init(RNGS, x), _x(2))
  for level in range(3):
    tree = jax.eval_shape(lambda x, level=level: d.init(RNGS, x, level=level), _x(level))
    assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(full)
    assert _shapes(tree) == _shapes(full)
  assert {"from_rgb0", "from_rgb1", "from_rgb2", "block1", "block2"} <= set(full["params"])
  assert "block0" not in full["params"]


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [1, 2])
def test_generator_fade_in(level):
  g = _gen()
  v = _jitter(_init(g, (N, LATENT)), 1)
  z = _z(3)
  lower = np.asarray(g.apply(v, z, level=level - 1))
  out0 = g.apply(v, z, level=level, alpha=0.0)
  # alpha 0: exactly the nearest-upsampled output of the level below.
  np.testing.assert_array_equal(out0, np.repeat(np.repeat(lower, 2, axis=1), 2, axis=2))
  assert np.array_equal(out0, g.apply(_perturb(v, f"to_rgb{level}"), z, level=level, alpha=0.0))
  # alpha 1: the new toRGB only; the lower toRGB has no influence.
  old_rgb = _perturb(v, f"to_rgb{level - 1}")
  out1 = g.apply(v, z, level=level, alpha=1.0)
  np.testing.assert_array_equal(out1, g.apply(old_rgb, z, level=level, alpha=1.0))
  # alpha 0.5: (1 - a) old + a new, both paths matter.
  half = g.apply(v, z, level=level, alpha=0.5)
  np.testing.assert_allclose(half, 0.5 * np.asarray(out0) + 0.5 * np.asarray(out1), rtol=1e-5,
                             atol=1e-6)
  assert not np.allclose(half, g.apply(old_rgb, z, level=level, alpha=0.5), atol=1e-3)
  # alpha may be traced (one program for the whole fade).
  fade = jax.jit(lambda a: g.apply(v, z, level=level, alpha=a))
  np.testing.assert_allclose(fade(jnp.float32(0.5)), half, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("level", [1, 2])
def test_discriminator_fade_in_uses_both_paths(level):
  """Guards against the port bug where D's blend never executes (next_features.md 2.2)."""
  d = _disc()
  v = _jitter(_init(d, (N, RES, RES, 3)), 2)
  x = _x(level, seed=4)
  pooled = jnp.asarray(ref.nhwc(ref.downsample(ref.nchw(x))), jnp.float32)
  out0, (f0,) = d.apply(v, x, level=level, alpha=0.0)
  lower, (f_lower,) = d.apply(v, pooled, level=level - 1)
  # alpha 0: D at the level below applied to avgpool(x).
  np.testing.assert_allclose(out0, lower, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(f0, f_lower, rtol=1e-5, atol=1e-5)
  new_rgb, old_rgb = _perturb(v, f"from_rgb{level}"), _perturb(v, f"from_rgb{level - 1}")
  np.testing.assert_array_equal(out0, d.apply(new_rgb, x, level=level, alpha=0.0)[0])
  # alpha 1: the new block only.
  out1 = d.apply(v, x, level=level, alpha=1.0)[0]
  np.testing.assert_array_equal(out1, d.apply(old_rgb, x, level=level, alpha=1.0)[0])
  assert not np.allclose(out1, out0, atol=1e-3)
  # alpha 0.5: both fromRGBs change the output.
  half = d.apply(v, x, level=level, alpha=0.5)[0]
  assert not np.allclose(half, d.apply(old_rgb, x, level=level, alpha=0.5)[0], atol=1e-3)
  assert not np.allclose(half, d.apply(new_rgb, x, level=level, alpha=0.5)[0], atol=1e-3)


# ------------------------------------------------------------------------------------------------
def test_generator_first_dense_has_gain_sqrt2_over_4():
  """Theano's 4x4 'full' conv on a 1x1 input is He-initialised with fan_in 16 C."""
  g = _gen()
  v = _init(g, (N, LATENT))
  z = _z(5)
  _, state = g.apply(v, z, level=0, capture_intermediates=True, mutable=["intermediates"])
  (dense_out,) = state["intermediates"]["block0"]["dense"]["__call__"]
  w = np.asarray(v["params"]["block0"]["dense"]["kernel"], np.float64)
  zn = ref.pixel_norm(np.asarray(z, np.float64))  # normalize_latents
  np.testing.assert_allclose(dense_out, zn @ w * (SQRT2 / 4) / math.sqrt(LATENT), rtol=1e-5,
                             atol=1e-6)
  # Without wscale: He init with the same gain, N(0, (sqrt(2) / 4)^2 / C) = N(0, 2 / (16 C)).
  big = prog.ProgressiveGenerator(4, latent_dim=64, fmap_base=512, fmap_max=64, use_wscale=False)
  kernel = _init(big, (2, 64))["params"]["block0"]["dense"]["kernel"]
  chex.assert_shape(kernel, (64, 16 * 64))
  assert abs(float(jnp.std(kernel)) - math.sqrt(2.0 / (16 * 64))) < 0.002


def _np_generator(p, z, level, alpha, norm, act, normalize=True, tanh=False):
  """Theano G_paper in NCHW: PN(BN(WS(conv))) with lasagne batch_norm moving bias and act."""
  act_fn = ref.lrelu if act == "lrelu" else (lambda a: np.maximum(a, 0.0))

  def post(y, blk, i, bias):
    if norm == "batch":
      nrm = blk[f"norm{i}"]
      return act_fn(ref.batch_norm(y, nrm["scale"], nrm["bias"]))
    y = act_fn(y + bias[None, :, None, None])
    return ref.pixel_norm(y) if norm == "pixel" else y

  def conv(blk, name, h):
    c = blk[name]
    return ref.conv(h, c["kernel"], None, SQRT2, 1), c.get("bias")

  h = ref.pixel_norm(z) if normalize else z
  b0 = p["block0"]
  f = b0["dense"]["kernel"].shape[1] // 16
  y = ref.dense(h, b0["dense"]["kernel"], None, SQRT2 / 4).reshape(len(z), 4, 4, f)
  h = post(np.transpose(y, (0, 3, 1, 2)), b0, 0, b0.get("bias"))
  h = post(*conv(b0, "conv1", h)[:1], b0, 1, conv(b0, "conv1", h)[1])
  rgb = {}
  for l in range(level + 1):
    if l:
      blk = p[f"block{l}"]
      h = ref.upsample(h)
      y, bias = conv(blk, "conv0", h)
      h = post(y, blk, 0, bias)
      y, bias = conv(blk, "conv1", h)
      h = post(y, blk, 1, bias)
    t = p[f"to_rgb{l}"]["conv"]
    rgb[l] = ref.conv(h, t["kernel"], t["bias"], 1.0, 0)
  out = rgb[level]
  if level:
    out = (1 - alpha) * ref.upsample(rgb[level - 1]) + alpha * out
  return ref.nhwc(np.tanh(out) if tanh else out)


@pytest.mark.parametrize("norm,act,level", [("pixel", "lrelu", 1), ("batch", "relu", 1),
                                            ("none", "lrelu", 2)])
def test_generator_matches_numpy(norm, act, level):
  g = _gen(norm=norm, activation=act)
  v = _jitter(_init(g, (N, LATENT)), 6)
  z = _z(7)
  out = g.apply(v, z, level=level, alpha=0.3)
  expect = _np_generator(_np_params(v), np.asarray(z, np.float64), level, 0.3, norm, act)
  np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-5)
  if norm == "batch":  # lasagne batch_norm: the conv loses its bias, BN has scale and bias
    assert set(v["params"]["block1"]["conv0"]) == {"kernel"}
    assert set(v["params"]["block1"]["norm0"]) == {"scale", "bias"}


def test_generator_tanh_is_applied_after_the_blend():
  g, gt = _gen(), _gen(tanh_output=True)
  v = _jitter(_init(g, (N, LATENT)), 8, scale=0.5)
  z = _z(8)
  out = gt.apply(v, z, level=1, alpha=0.5)
  np.testing.assert_allclose(out, np.tanh(np.asarray(g.apply(v, z, level=1, alpha=0.5))),
                             rtol=1e-5, atol=1e-6)
  lerp_of_tanh = 0.5 * np.tanh(np.repeat(np.repeat(np.asarray(g.apply(v, z, level=0)), 2, 1), 2, 2)
                               ) + 0.5 * np.tanh(np.asarray(g.apply(v, z, level=1, alpha=1.0)))
  assert not np.allclose(out, lerp_of_tanh, atol=1e-4)


@pytest.mark.parametrize("norm,independent", [("vbn", True), ("batch", False), ("pixel", True)])
def test_generator_samples_depend_on_each_other_only_with_batch_norm(norm, independent):
  # VBN: 2 reference rows + 2 live rows, so the layers see the shapes of the other tests (N = 4).
  live = 2 if norm == "vbn" else N
  g = _gen(norm=norm, num_ref=N - live)
  v = _init(g, (live, LATENT))
  assert ("vbn_ref" in v) == (norm == "vbn")
  if norm == "vbn":
    chex.assert_shape(v["vbn_ref"]["z"], (N - live, LATENT))
  z = _z(9, n=live)
  z2 = z.at[0].set(_z(10)[0])
  out, out2 = g.apply(v, z, level=1), g.apply(v, z2, level=1)
  chex.assert_shape(out, (live, 8, 8, 3))
  assert np.allclose(out[1:], out2[1:], rtol=1e-5, atol=1e-6) == independent


def _np_discriminator(p, x, level, alpha, group, layer_norm):
  """Theano D_paper in NCHW (pool after the activation; LN takes the conv's bias)."""
  def dconv(q, h, pad):
    if layer_norm:
      y = ref.conv(h, q["conv"]["kernel"], None, SQRT2, pad)
      return ref.lrelu(ref.layer_norm(y, q["layer_norm"]["gain"], q["layer_norm"]["bias"]))
    return ref.lrelu(ref.conv(h, q["conv"]["kernel"], q["conv"]["bias"], SQRT2, pad))

  def from_rgb(l, img):
    c = p[f"from_rgb{l}"]["conv"]
    return ref.lrelu(ref.conv(img, c["kernel"], c["bias"], SQRT2, 0))

  def block(l, h):
    h = dconv(p[f"block{l}"]["conv0"], h, 1)
    return ref.downsample(dconv(p[f"block{l}"]["conv1"], h, 1))

  h = from_rgb(level, x)
  if level:
    h = (1 - alpha) * from_rgb(level - 1, ref.downsample(x)) + alpha * block(level, h)
  for l in range(level - 1, 0, -1):
    h = block(l, h)
  if group != 0:
    h = ref.minibatch_stddev(h, group)
  h = dconv(p["head_conv0"], h, 1)
  h = dconv(p["head_conv1"], h, 0)
  feats = h.reshape(len(x), -1)
  return ref.dense(feats, p["out"]["kernel"], p["out"]["bias"], 1.0), feats


@pytest.mark.parametrize("group,layer_norm,level", [(None, False, 2), (2, True, 1), (0, False, 1)])
def test_discriminator_matches_numpy(group, layer_norm, level):
  d = _disc(mbstd_group_size=group, layer_norm=layer_norm)
  v = _jitter(_init(d, (N, RES, RES, 3)), 11)
  x = _x(level, seed=12)
  logits, (feats,) = d.apply(v, x, level=level, alpha=0.3)
  e_logits, e_feats = _np_discriminator(_np_params(v), ref.nchw(x), level, 0.3, group, layer_norm)
  np.testing.assert_allclose(logits, e_logits, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(feats, e_feats, rtol=1e-4, atol=1e-4)
  assert d.batch_independent == (group == 0)
  if layer_norm:
    assert set(v["params"]["block1"]["conv0"]["conv"]) == {"kernel"}
    assert v["params"]["head_conv1"]["layer_norm"]["gain"].shape == ()


def test_discriminator_minibatch_discrimination_replaces_stddev():
  """Theano D_paper: MinibatchLayer after D1a (the 4x4 valid conv), before Dscores."""
  d = _disc(minibatch_kernels=3, minibatch_dim=2)
  v = _init(d, (N, RES, RES, 3))
  p = v["params"]
  chex.assert_shape(p["head_conv0"]["conv"]["kernel"], (3, 3, 16, 16))  # no stddev channel
  chex.assert_shape(p["minibatch"]["theta"], (16, 3, 2))
  chex.assert_shape(p["out"]["kernel"], (16 + 3, 1))
  assert not np.allclose(p["minibatch"]["bias"], -1.0)  # data-dependent init ran in init
  assert not d.batch_independent
  logits, (feats,) = d.apply(v, _x(1), level=1, alpha=0.5)
  chex.assert_shape(logits, (N, 1))
  chex.assert_shape(feats, (N, 16))


def test_level_and_input_errors():
  g, d = _gen(), _disc()
  gv = _init(g, (N, LATENT))
  with pytest.raises(ValueError, match=r"outside \[0, 2\]"):
    g.apply(gv, _z(), level=3)
  with pytest.raises(TypeError, match="static Python int"):
    g.apply(gv, _z(), level=jnp.int32(1))
  with pytest.raises(ValueError, match="latents of shape"):
    g.apply(gv, jnp.zeros((N, LATENT + 1)))
  dv = jax.eval_shape(lambda x: d.init(RNGS, x), _x(2))
  with pytest.raises(ValueError, match=r"expects images of shape \(N, 8, 8, 3\)"):
    jax.eval_shape(lambda v, x: d.apply(v, x, level=1), dv, _x(2))
  with pytest.raises(ValueError, match="power-of-two resolution"):
    prog.ProgressiveGenerator(12).init(RNGS, jnp.zeros((1, 128)))


# ------------------------------------------------------------------------------------------------
def _cfg(**kw):
  return ml_collections.ConfigDict({"name": "progressive", **kw})


def test_registry_builds_from_config_keys():
  g, d = models.build(_cfg(z_dim=8, fmap_base=64, fmap_max=32, fmap_decay=1.0, g_norm="batch",
                           g_activation="relu", tanh_output=True, normalize_latents=False,
                           use_wscale=False, mbstd_group_size=4, d_layer_norm=True),
                      1, (32, 32, 3))
  assert isinstance(g, prog.ProgressiveGenerator) and isinstance(d, prog.ProgressiveDiscriminator)
  assert (g.resolution, g.latent_dim, g.fmap_base, g.fmap_max, g.norm, g.activation) == (
      32, 8, 64, 32, "batch", "relu")
  assert g.tanh_output and not g.normalize_latents and not g.use_wscale
  assert (d.resolution, d.mbstd_group_size, d.layer_norm, d.use_wscale) == (32, 4, True, False)
  # Defaults: the Theano CIFAR-10 networks.
  g, d = models.build(_cfg(), 1, (32, 32, 3))
  assert (g.latent_dim, g.fmap_base, g.fmap_max, g.norm, g.activation, g.tanh_output) == (
      128, 4096, 128, "pixel", "lrelu", False)
  assert d.mbstd_group_size is None and d.minibatch_kernels == 0 and not d.layer_norm


@pytest.mark.parametrize("kw,num_classes,shape,match", [
    ({}, 10, (32, 32, 3), "unconditional"),
    ({}, 1, (32, 16, 3), "square"),
    ({}, 1, (24, 24, 3), "power of two"),
    ({}, 1, (2, 2, 3), "power of two"),
    ({"g_norm": "layer"}, 1, (32, 32, 3), "g_norm"),
    ({"g_activation": "elu"}, 1, (32, 32, 3), "g_activation"),
    ({"mbstd_group_size": -1}, 1, (32, 32, 3), "mbstd_group_size"),
    ({"minibatch_kernels": -2}, 1, (32, 32, 3), "minibatch_kernels"),
    ({"fmap_max": 0}, 1, (32, 32, 3), "fmap_max"),
    ({"fmap_base": 8}, 1, (32, 32, 3), "0 feature maps"),
])
def test_registry_errors(kw, num_classes, shape, match):
  with pytest.raises(ValueError, match=match):
    models.build(_cfg(**kw), num_classes, shape)
