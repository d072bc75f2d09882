"""The 2015-12-05 TensorFlow Inception network (IS/FID/KID feature extractor) in Flax linen.

This is the network of `openai/improved-gan inception_score/model.py` (papers.md A.6) as ported to
PyTorch by pytorch-fid (`src/pytorch_fid/inception.py`, `fid_inception_v3` with the FIDInceptionA/C/E
blocks) and torch-fidelity (`feature_extractor_inceptionv3.py`, papers.md D.4):

* input uint8 NHWC at any size -> TF1 bilinear resize to 299x299 (`tf1_resize.py`) -> (x - 128) / 128;
* BasicConv2d = conv without bias -> batch norm in inference mode (eps 1e-3, TF's frozen moving
  statistics; TF had no BN scale, the ported weights carry gamma = 1) -> ReLU;
* Mixed_5b..7c with the TF quirks the torchvision InceptionV3 lacks: the 3x3/stride-1 average pools
  in the A, C and first E blocks do not count the zero padding (`count_include_pad=False`), and the
  last E block (Mixed_7c) uses a 3x3/stride-1 *max* pool in its pool branch;
* global average pool -> `pool` (N, 2048), the `pool_3` features used by FID and KID;
* the legacy 1008-way `softmax/logits` head: `logits_unbiased` = pool @ W (no bias), the logits of
  the Inception score in the openai code and torch-fidelity; `logits` adds the fc bias.

Variables: one `params` collection; every BasicConv2d holds `kernel` (HWIO), `scale`, `bias`, `mean`,
`var`; the head is `fc/kernel` (2048, 1008) and `fc/bias`. Nothing is ever trained: the batch-norm
statistics are plain parameters. `inception_weights.py` converts the released weights to this layout.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping, Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from itgan_jax.metrics import batched_apply, feature_cache
from itgan_jax.metrics.tf1_resize import resize_bilinear_tf1

INPUT_SIZE = 299
BN_EPS = 1e-3
POOL_DIM = 2048
NUM_LOGITS = 1008
HIGHEST = lax.Precision.HIGHEST


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class BasicConv2d(nn.Module):
  """conv (no bias) -> BN(inference, eps 1e-3) -> ReLU, as torchvision/pytorch-fid `BasicConv2d`.

  BN in inference: y = (x - mean) * scale / sqrt(var + eps) + bias, evaluated (like PyTorch's CPU
  kernel) as x * m + (bias - mean * m) with m = scale * rsqrt(var + eps).
  """
  features: int
  kernel_size: int | Sequence[int]
  strides: int = 1
  padding: int | Sequence[int] = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = _pair(self.kernel_size)
    ph, pw = _pair(self.padding)
    shape = (kh, kw, x.shape[-1], self.features)
    kernel = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_in", "normal"), shape,
                        jnp.float32)
    scale = self.param("scale", nn.initializers.ones, (self.features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    mean = self.param("mean", nn.initializers.zeros, (self.features,), jnp.float32)
    var = self.param("var", nn.initializers.ones, (self.features,), jnp.float32)
    y = lax.conv_general_dilated(x, kernel, (self.strides, self.strides), ((ph, ph), (pw, pw)),
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)
    mul = scale * lax.rsqrt(var + BN_EPS)
    return nn.relu(y * mul + (bias - mean * mul))


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """`nn.MaxPool2d(kernel_size=3, stride=2)`, no padding (TF 'VALID')."""
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")


def max_pool_3x3_s1_same(x: jax.Array) -> jax.Array:
  """`F.max_pool2d(x, 3, stride=1, padding=1)` (padding is -inf): the Mixed_7c pool branch."""
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 1, 1, 1), pad)


def avg_pool_3x3_s1_same(x: jax.Array) -> jax.Array:
  """`F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)`: TF's 'SAME' average pool
  divides by the number of real (unpadded) pixels in each window (4 at corners, 6 on edges)."""
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  sums = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  counts = lax.reduce_window(ones, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
  return sums / counts


class InceptionA(nn.Module):
  """Mixed_5b/5c/5d (FIDInceptionA): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool(excl. pad)->1x1."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, 1, name="branch1x1")(x)
    b5 = BasicConv2d(48, 1, name="branch5x5_1")(x)
    b5 = BasicConv2d(64, 5, padding=2, name="branch5x5_2")(b5)
    b3 = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, 1, name="branch_pool")(avg_pool_3x3_s1_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: 3x3/s2 | 1x1->3x3->3x3/s2 | maxpool 3x3/s2."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, 3, strides=2, name="branch3x3")(x)
    bd = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, 3, strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b..6e (FIDInceptionC): factorised 7x7 towers, avgpool excluding padding."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, 1, name="branch1x1")(x)
    b7 = BasicConv2d(c7, 1, name="branch7x7_1")(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c7, 1, name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, 1, name="branch_pool")(avg_pool_3x3_s1_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: 1x1->3x3/s2 | 1x1->1x7->7x1->3x3/s2 | maxpool 3x3/s2."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, 1, name="branch3x3_1")(x)
    b3 = BasicConv2d(320, 3, strides=2, name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, 1, name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, 3, strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (FIDInceptionE_1, pool='avg' excluding padding) and Mixed_7c (FIDInceptionE_2,
  pool='max': the TF graph's max pool, kept by pytorch-fid as "likely an error" of the original)."""
  pool: str = "avg"

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, 1, name="branch1x1")(x)
    b3 = BasicConv2d(384, 1, name="branch3x3_1")(x)
    b3a = BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3)
    b3b = BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)
    bd = BasicConv2d(448, 1, name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, 3, padding=1, name="branch3x3dbl_2")(bd)
    bda = BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd)
    bdb = BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)
    if self.pool == "avg":
      pooled = avg_pool_3x3_s1_same(x)
    elif self.pool == "max":
      pooled = max_pool_3x3_s1_same(x)
    else:
      raise ValueError(f"InceptionE pool must be 'avg' or 'max', got {self.pool!r}")
    bp = BasicConv2d(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3a, b3b, bda, bdb, bp], axis=-1)


def preprocess(images: jax.Array, resize: bool = True) -> jax.Array:
  """uint8 (or float in [0, 255]) NHWC -> TF1 bilinear resize to 299 -> (x - 128) / 128 (float32).

  The TF graph multiplies by 0.0078125 = 1/128, which is bit-identical to dividing by 128.
  """
  x = images.astype(jnp.float32)
  if resize:
    x = resize_bilinear_tf1(x, (INPUT_SIZE, INPUT_SIZE))
  return (x - 128.0) / 128.0


class InceptionV3(nn.Module):
  """The FID/IS Inception network. Input NHWC uint8 images in [0, 255] of any size.

  Returns {'pool': (N, 2048)} plus, when `include_head`, {'logits_unbiased', 'logits'}: (N, 1008).
  With `resize=False` the input must already be 299x299 (it is still normalised).
  """
  include_head: bool = True
  resize: bool = True

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"InceptionV3 expects NHWC RGB images (N, H, W, 3), got shape {images.shape}")
    x = preprocess(images, self.resize)
    x = BasicConv2d(32, 3, strides=2, name="Conv2d_1a_3x3")(x)       # 149x149x32
    x = BasicConv2d(32, 3, name="Conv2d_2a_3x3")(x)                  # 147x147x32
    x = BasicConv2d(64, 3, padding=1, name="Conv2d_2b_3x3")(x)       # 147x147x64
    x = max_pool_3x3_s2(x)                                           # 73x73x64
    x = BasicConv2d(80, 1, name="Conv2d_3b_1x1")(x)                  # 73x73x80
    x = BasicConv2d(192, 3, name="Conv2d_4a_3x3")(x)                 # 71x71x192
    x = max_pool_3x3_s2(x)                                           # 35x35x192
    x = InceptionA(32, name="Mixed_5b")(x)                           # 35x35x256
    x = InceptionA(64, name="Mixed_5c")(x)                           # 35x35x288
    x = InceptionA(64, name="Mixed_5d")(x)                           # 35x35x288
    x = InceptionB(name="Mixed_6a")(x)                               # 17x17x768
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)                          # 17x17x768
    x = InceptionD(name="Mixed_7a")(x)                               # 8x8x1280
    x = InceptionE("avg", name="Mixed_7b")(x)                        # 8x8x2048
    x = InceptionE("max", name="Mixed_7c")(x)                        # 8x8x2048
    pool = jnp.mean(x, axis=(1, 2))                                  # adaptive avg pool to 1x1
    out = {"pool": pool}
    if self.include_head:
      out["logits_unbiased"], out["logits"] = _LogitsHead(NUM_LOGITS, name="fc")(pool)
    return out


class _LogitsHead(nn.Module):
  """The legacy 1008-way `softmax/logits` layer: returns (pool @ W, pool @ W + b)."""
  num_classes: int

  @nn.compact
  def __call__(self, pool: jax.Array) -> tuple[jax.Array, jax.Array]:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (pool.shape[-1], self.num_classes),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.num_classes,), jnp.float32)
    unbiased = jnp.matmul(pool, kernel, precision=HIGHEST)
    return unbiased, unbiased + bias


def init_params(seed: int = 0, include_head: bool = True) -> dict[str, Any]:
  """Random parameters for tests only (never for real metrics): He-normal conv kernels, identity BN
  statistics, N(0, 1/2048) head. Drawn with NumPy from `param_shapes`, because jitting
  `InceptionV3.init` spends ~40 s compiling 95 separate RNG draws on CPU."""
  rng = np.random.default_rng(seed)
  flat = {}
  for key, shape in param_shapes(include_head).items():
    leaf = key.rsplit("/", 1)[1]
    if leaf == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      flat[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    elif leaf in ("scale", "var"):
      flat[key] = np.ones(shape, np.float32)
    else:
      flat[key] = np.zeros(shape, np.float32)
  return unflatten_params(flat)


def unflatten_params(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """{'a/b/kernel': array} -> nested {'a': {'b': {'kernel': array}}}."""
  return traverse_util.unflatten_dict(flat, sep="/")


def flatten_params(tree: Mapping[str, Any]) -> dict[str, Any]:
  """Nested params -> {'a/b/kernel': array} (inverse of `unflatten_params`)."""
  return traverse_util.flatten_dict(dict(tree), sep="/")


def param_shapes(include_head: bool = True) -> dict[str, tuple[int, ...]]:
  """Flat {'Mixed_5b/branch1x1/kernel': shape, ...} of the network, computed without running it."""
  dummy = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.uint8)
  tree = jax.eval_shape(lambda x: InceptionV3(include_head=include_head).init(jax.random.key(0), x),
                        dummy)["params"]
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    flat["/".join(p.key for p in path)] = tuple(leaf.shape)
  return flat


def has_logits_head(params: Mapping[str, Any]) -> bool:
  """Whether `params` carry the 1008-way fc head needed by the Inception score."""
  return "fc" in params


class InceptionFeatureExtractor:
  """Jitted, batched Inception features of uint8 NHWC images: {'pool', 'logits_unbiased', 'logits'}.

  Images are processed in fixed-size batches (the last one zero-padded, so one compilation per
  input resolution) and, when several devices exist, sharded over the batch axis with
  `jax.jit` + `NamedSharding` (parameters replicated). Single-process only.

  Args:
    params: the `params` tree of `InceptionV3`; if None they are loaded from `weights_path` (or the
      default location, see `inception_weights.default_weights_path`).
    weights_path: a converted `.npz` weight file (`python -m itgan_jax.metrics.inception_weights`).
    batch_size: images per step (rounded up to a multiple of the device count).
    devices: devices to shard over (default: all local devices).
    cache_dir: optional directory of cached features (`feature_cache.py`): blocks of
      `cache_block` images are stored as they finish, so a killed extraction resumes.
    cache_block: images per cached block (rounded up to a multiple of `batch_size`).
  """

  def __init__(self, params: Mapping[str, Any] | None = None, *,
               weights_path: str | os.PathLike | None = None, batch_size: int = 64,
               devices: Sequence[jax.Device] | None = None,
               cache_dir: str | os.PathLike | None = None, cache_block: int = 2048):
    self.weights_path = None
    if params is None:
      from itgan_jax.metrics import inception_weights  # pylint: disable=import-outside-toplevel
      params, _ = inception_weights.load_inception_params(weights_path)
      self.weights_path = inception_weights.resolve_weights_path(weights_path)
    self.has_logits_head = has_logits_head(params)
    self.outputs = ("pool", "logits_unbiased", "logits") if self.has_logits_head else ("pool",)
    self._batched_apply = batched_apply.BatchedApply(
        InceptionV3(include_head=self.has_logits_head), params, batch_size=batch_size,
        devices=devices)
    self.devices = self._batched_apply.devices
    self.batch_size = self._batched_apply.batch_size
    self.cache_dir = cache_dir
    self.cache_block = int(math.ceil(max(cache_block, 1) / self.batch_size) * self.batch_size)
    self._host_params = params
    self._fingerprint = None

  def require_logits_head(self) -> None:
    """Raises a clear error when the weights lack the 1008-way head (the Inception score needs it)."""
    if not self.has_logits_head:
      from itgan_jax.metrics import inception_weights  # pylint: disable=import-outside-toplevel
      raise ValueError(inception_weights.missing_head_message(self.weights_path))

  def __call__(self, images: np.ndarray,
               outputs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Features of `images` (N, H, W, 3) uint8 in [0, 255], any H, W: {name: float32 (N, dim)}."""
    wanted = tuple(outputs) if outputs is not None else self.outputs
    for name in wanted:
      if name in ("logits_unbiased", "logits"):
        self.require_logits_head()
      elif name != "pool":
        raise ValueError(f"unknown Inception output {name!r}; available: {self.outputs}")
    images = np.asarray(images)
    if images.dtype != np.uint8:
      raise TypeError(
          f"Inception features need uint8 images in [0, 255] (as torch-fidelity), got dtype "
          f"{images.dtype}; quantise generator samples first, e.g. "
          "np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8) for x in [-1, 1].")
    if images.ndim != 4 or images.shape[-1] != 3:
      hint = " (NCHW? transpose with images.transpose(0, 2, 3, 1))" if (
          images.ndim == 4 and images.shape[1] == 3) else ""
      hint += " (grayscale? repeat the channel 3 times)" if (
          images.ndim == 4 and images.shape[-1] == 1) else ""
      raise ValueError(f"Inception features need NHWC RGB images (N, H, W, 3), got shape "
                       f"{images.shape}{hint}")
    return feature_cache.features_in_blocks(
        images, wanted, lambda block: self._batched(block, wanted), block_size=self.cache_block,
        cache_dir=self.cache_dir, fingerprint=self.fingerprint() if self.cache_dir else None,
        label="Inception features")

  def fingerprint(self) -> str:
    """SHA-256 of the weights (keys the feature cache)."""
    if self._fingerprint is None:
      flat = flatten_params(jax.device_get(self._host_params))
      self._fingerprint = feature_cache.fingerprint_arrays(
          {"inception-2015-12-05/" + k: v for k, v in flat.items()})
    return self._fingerprint

  def _batched(self, images: np.ndarray, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Features of validated images in fixed-size (zero-padded) batches, one batch in flight."""
    return self._batched_apply(images, wanted)
