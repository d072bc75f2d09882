"""RP-GAN networks and random projections (Neyshabur et al. 2017; ayanc/rpgan, papers.md C.2-C.3).

Projections (`filts/rproj.py 8,2,1,K`, `rpglib/disc.py`): K filters f x f x C -> 1 channel with
i.i.d. N(0, 1) entries, each divided by its Frobenius norm, fixed for the whole run and shared by
real and generated images. Applied with symmetric zero padding (f - s) // 2 and a VALID stride-s
convolution (official f = 8, s = 2, padding 3: 64x64x3 -> 32x32x1, 128x128x3 -> 64x64x1). Here all
K filters are ONE convolution with K output channels (`project`): output channel k is P_k x.
`draw_projections(seed, ...)` is rproj.py's algorithm on `np.random.RandomState(seed)` (the
official banks were drawn without a seed: `load_projections` reads its `filts/K*_dm12.npz` files).

D_k (`rpglib/disc.py`; the baseline `disc0.py` is the same stack on the full image): on a side-S
input, log2(S) layers: log2(S) - 1 convs 4x4 stride 2 with 1-pixel zero padding and channels
df, 2df, 4df, ... (each + bias, lReLU 0.2), down to 2x2, then a 2x2 VALID conv to one logit. No
normalisation. Every kernel U(-sqrt(3 / fan_in), +sqrt(3 / fan_in)), fan_in = k * k * C_in; biases
0. `DiscriminatorStack` holds K of them as one stacked pytree (leading K axis) and evaluates them
in one call with a selectable strategy (docs/rpgan.md): 'vmap' (grouped convolutions), 'map'
(`jax.lax.map` over chunks of `map_batch_size` discriminators) or 'shard' (K split over the
devices of a mesh axis with `jax.shard_map`, vmap inside each device).

G (`rpglib/gen.py`): z ~ U(-1, 1)^zlen -> linear to 4x4xf1 (no bias; TF's 1x1 conv on a 1x1 input,
reshaped row-major) -> batch norm over (N, H, W) without scale or offset, eps 1e-3 -> + bias ->
ReLU -> 4x4 stride-2 transposed convs ('SAME', TF kernel layout (k, k, out, in)) halving the
channels, each -> BN -> + bias -> ReLU, the last one to C channels -> + bias -> tanh (no BN).
Face 64x64: 1024 -> 512 -> 256 -> 128 -> 3. Init U(+-sqrt(3 / fan_in)) (linear: fan_in = zlen;
deconvs: k * k * C_in), biases 0. Batch statistics always (also when sampling).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.models.imagenet import lrelu, tf_conv2d_transpose
from itgan_jax.nn import conv as conv_lib
from itgan_jax.nn.batchnorm import BatchStatNorm

K_STRATEGIES = ("auto", "vmap", "map", "shard")
# 'auto': backend -> {smallest K: strategy from that K on}, from benchmarks/rpgan_step.py
# (RESULTS.md "RP-GAN step"). CPU, measured on configs/cifar10_rpgan.py:small: the fastest was
# 'vmap' at K = 4 and 12, 'map' (groups of 4) at K = 24 and 48 (12-17 % ahead at 48 in two runs).
# GPU/TPU were not measured here (no accelerator was lent): vmap until they are.
AUTO_STRATEGY = {"cpu": {1: "vmap", 24: "map"}, "gpu": {1: "vmap"}, "tpu": {1: "vmap"}}


# --------------------------------------------------------------------------------------------------
# Projections
def draw_projections(seed: int, num: int, size: int = 8, channels: int = 3) -> np.ndarray:
  """K unit-Frobenius-norm Gaussian filters as one HWIO bank (size, size, channels, num), float32.

  rproj.py's algorithm with `np.random.RandomState(seed)` in place of the global NumPy state: for
  each projection in turn, `normal(size=(f, f, C, 1))`, cast to float32, divided by the square root
  of its float32 sum of squares over (f, f, C).
  """
  if num < 1 or size < 1 or channels < 1:
    raise ValueError(f"need num >= 1, size >= 1 and channels >= 1 projections, got num={num}, "
                     f"size={size}, channels={channels}")
  rng = np.random.RandomState(seed)
  filters = []
  for _ in range(num):
    p = np.float32(rng.normal(size=(size, size, channels, 1)))
    filters.append(p / np.sqrt(np.sum(p * p, axis=(0, 1, 2))))
  return np.concatenate(filters, axis=-1).astype(np.float32)


def load_projections(path: str | os.PathLike) -> tuple[np.ndarray, int]:
  """An official filter file (`filts/K12_dm12.npz` ...: `nfilt`, `p<i>` (f, f, C, 1) float32,
  `s<i>` stride) -> (HWIO bank (f, f, C, K), stride); clear errors for other contents."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"model.projection_file={path!r} does not exist (an official "
                            "ayanc/rpgan filts/K<n>_dm12.npz file, or None to draw the bank from "
                            "the run's seed)")
  with np.load(path) as f:
    if "nfilt" not in f:
      raise ValueError(f"{path} is not an rproj.py filter file (no 'nfilt' entry; keys: "
                       f"{sorted(f.keys())[:8]})")
    num = int(f["nfilt"])
    filters, strides = [], set()
    for i in range(num):
      if f"p{i}" not in f or f"s{i}" not in f:
        raise ValueError(f"{path}: nfilt={num} but p{i} / s{i} is missing")
      p = np.asarray(f[f"p{i}"], np.float32)
      if p.ndim != 4 or p.shape[-1] != 1 or p.shape[0] != p.shape[1]:
        raise ValueError(f"{path}: p{i} has shape {p.shape}; expected (f, f, C, 1) (one output "
                         "channel per projection)")
      filters.append(p)
      strides.add(int(f[f"s{i}"]))
  if num < 1:
    raise ValueError(f"{path} holds no projections (nfilt={num})")
  if len({p.shape for p in filters}) != 1 or len(strides) != 1:
    raise ValueError(f"{path}: the projections differ in shape {sorted({p.shape for p in filters})} "
                     f"or stride {sorted(strides)}; the official D expects one size and stride")
  return np.concatenate(filters, axis=-1), strides.pop()


def projection_padding(size: int, stride: int) -> int:
  """The symmetric zero padding of the projection (official `(f0 - stride) // 2`)."""
  return (size - stride) // 2


def projected_side(side: int, size: int, stride: int) -> int:
  """Side of P_k x for a side-`side` image (VALID conv after the symmetric padding)."""
  return (side + 2 * projection_padding(size, stride) - size) // stride + 1


def project(x: jax.Array, bank: jax.Array, stride: int) -> jax.Array:
  """All K projections as ONE convolution: (N, H, W, C) -> (N, H', W', K), channel k = P_k x."""
  pad = projection_padding(bank.shape[0], stride)
  return conv_lib.conv2d(x, bank.astype(x.dtype), (stride, stride), ((pad, pad), (pad, pad)))


# --------------------------------------------------------------------------------------------------
# Networks
def uniform_fan_in(fan_in: int):
  """U(-sqrt(3 / fan_in), +sqrt(3 / fan_in)) (official `sq = np.sqrt(3.0 / fan_in)`)."""
  bound = math.sqrt(3.0 / fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def discriminator_layers(side: int) -> int:
  """log2(side): the official `numl` (side a power of two >= 2)."""
  if side < 2 or side & (side - 1):
    raise ValueError(f"the RP-GAN discriminator takes square inputs whose side is a power of two "
                     f">= 2 (it halves them down to 2x2), got side {side}")
  return int(round(math.log2(side)))


class RPDiscriminator(nn.Module):
  """One official D (`disc.py` per projection, `disc0.py` on the full image): (N, S, S, C) -> (N,)
  logits; `features` = df."""
  features: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
      raise ValueError(f"RPDiscriminator takes square NHWC images, got shape {x.shape}")
    num_layers = discriminator_layers(x.shape[1])
    h = x
    for j in range(num_layers):
      last = j == num_layers - 1
      k, c_out = (2, 1) if last else (4, self.features * 2 ** j)
      w = self.param(f"c{j}_w", uniform_fan_in(k * k * h.shape[-1]), (k, k, h.shape[-1], c_out))
      b = self.param(f"c{j}_b", nn.initializers.zeros, (c_out,))
      pad = 0 if last else 1
      h = conv_lib.conv2d(h, w.astype(h.dtype), (1, 1) if last else (2, 2),
                          ((pad, pad), (pad, pad))) + b.astype(h.dtype)
      if not last:
        h = lrelu(h)
    return h.reshape(h.shape[0])


def generator_channels(image_size: int, features: int, out_channels: int) -> tuple[int, ...]:
  """Channels at sides 4, 8, ..., image_size (official `gen.py` loop): f1, f1/2, ..., C."""
  if image_size < 8 or image_size & (image_size - 1):
    raise ValueError(f"the RP-GAN generator makes square images whose side is a power of two "
                     f">= 8 (4x4 start, stride-2 deconvs), got {image_size}")
  num_deconvs = int(round(math.log2(image_size))) - 2
  channels = [features // 2 ** i for i in range(num_deconvs)] + [out_channels]
  if min(channels[:-1]) < 1:
    raise ValueError(f"model.g_features={features} is too small to halve {num_deconvs - 1} times "
                     f"for {image_size}x{image_size} images")
  return tuple(channels)


class RPGenerator(nn.Module):
  """The official G (`gen.py`, module docstring): z (N, zlen) -> (N, S, S, C) in [-1, 1]."""
  image_size: int = 64
  out_channels: int = 3
  features: int = 1024
  kernel_size: int = 4
  bn_eps: float = 1e-3

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    del train  # batch statistics always (official)
    channels = generator_channels(self.image_size, self.features, self.out_channels)
    w = self.param("c1_w", uniform_fan_in(z.shape[-1]), (z.shape[-1], 16 * channels[0]))
    h = jnp.dot(z, w.astype(z.dtype)).reshape((z.shape[0], 4, 4, channels[0]))
    h = nn.relu(BatchStatNorm(eps=self.bn_eps, name="c1_bn")(h))  # BN, then the bias c1_b
    k = self.kernel_size
    for i, c_out in enumerate(channels[1:]):
      last = i == len(channels) - 2
      c_in = h.shape[-1]
      w = self.param(f"c{i + 2}_w", uniform_fan_in(k * k * c_in), (k, k, c_out, c_in))
      h = tf_conv2d_transpose(h, w.astype(h.dtype), 2)
      if last:
        h = jnp.tanh(h + self.param(f"c{i + 2}_b", nn.initializers.zeros, (c_out,)).astype(h.dtype))
      else:
        h = nn.relu(BatchStatNorm(eps=self.bn_eps, name=f"c{i + 2}_bn")(h))
    return h


# --------------------------------------------------------------------------------------------------
# K discriminators as one stacked pytree
@dataclasses.dataclass(frozen=True)
class DiscriminatorStack:
  """K independent copies of `module`, parameters stacked on a leading K axis, evaluated in one call.

  Attributes:
    module: one discriminator (`RPDiscriminator`).
    num: K.
    strategy: 'vmap' | 'map' | 'shard' (resolved, not 'auto').
    map_batch_size: discriminators per `lax.map` iteration ('map'; K = all at once).
    mesh: the mesh whose `axis` splits K ('shard'); K must divide over its devices.
    axis: the mesh axis name.
  """
  module: nn.Module
  num: int
  strategy: str = "vmap"
  map_batch_size: int = 1
  mesh: Any = None
  axis: str = "data"

  def __post_init__(self):
    if self.num < 1:
      raise ValueError(f"a discriminator stack needs K >= 1 discriminators, got {self.num}")
    if self.strategy not in K_STRATEGIES[1:]:
      raise ValueError(f"model.k_strategy={self.strategy!r} must be one of {K_STRATEGIES}")
    if self.strategy == "map" and self.map_batch_size < 1:
      raise ValueError(f"model.k_map_batch_size={self.map_batch_size} must be >= 1")
    if self.strategy == "shard":
      if self.mesh is None:
        raise ValueError("k_strategy='shard' needs a mesh")
      n = self.mesh.shape[self.axis]
      if self.num % n:
        raise ValueError(f"k_strategy='shard' splits the K={self.num} discriminators over the "
                         f"{n} devices of mesh axis {self.axis!r}: K must be a multiple of {n} "
                         "(set model.num_projections, --config.num_devices, or another "
                         "model.k_strategy)")

  def init(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Any:
    """K independent initialisations (keys split from `rng`): the stacked `params`."""
    x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    keys = jax.random.split(rng, self.num)
    return jax.vmap(lambda k: self.module.init(k, x)["params"])(keys)

  def _one(self, params, x):
    return self.module.apply({"params": params}, x)

  def apply(self, params: Any, inputs: jax.Array) -> jax.Array:
    """`inputs` (K, N, S, S, c) (input k for D_k) -> logits (K, N)."""
    if inputs.shape[0] != self.num:
      raise ValueError(f"{inputs.shape[0]} inputs for {self.num} discriminators")
    if self.strategy == "vmap":
      return jax.vmap(self._one)(params, inputs)
    if self.strategy == "map":
      return jax.lax.map(lambda a: self._one(*a), (params, inputs),
                         batch_size=min(self.map_batch_size, self.num))
    from jax.sharding import PartitionSpec as P  # pylint: disable=import-outside-toplevel
    spec = P(self.axis)
    return jax.shard_map(jax.vmap(self._one), mesh=self.mesh, in_specs=(spec, spec),
                         out_specs=spec)(params, inputs)

  def param_sharding(self, params: Any, mesh: Any = None):
    """NamedShardings that split every stacked leaf along K over the mesh axis (for placing the
    parameters and optimizer states of 'shard', which the training loop does through
    `RandomProjectionGAN.state_sharding`; any strategy's stacked pytree is shardable this way).

    Args:
      params: a pytree (arrays or ShapeDtypeStructs) whose every leaf has the leading K axis.
      mesh: the mesh to place on (default: the stack's).
    """
    from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=import-outside-toplevel
    mesh = self.mesh if mesh is None else mesh
    if mesh is None:
      raise ValueError("param_sharding needs the stack's mesh")
    n = mesh.shape[self.axis]

    def one(leaf):
      if leaf.ndim < 1 or leaf.shape[0] != self.num or self.num % n:
        raise ValueError(f"a leaf of shape {tuple(leaf.shape)} is not stacked over the K="
                         f"{self.num} discriminators in K / {n} rows per device of mesh axis "
                         f"{self.axis!r}")
      return NamedSharding(mesh, P(self.axis, *([None] * (leaf.ndim - 1))))
    return jax.tree.map(one, params)


def resolve_strategy(strategy: str, num: int, backend: str | None = None) -> str:
  """'auto' -> the measured choice of `AUTO_STRATEGY` for K = `num` on `backend` (default:
  JAX's); other strategies unchanged."""
  if strategy not in K_STRATEGIES:
    raise ValueError(f"model.k_strategy={strategy!r} must be one of {K_STRATEGIES}")
  if strategy != "auto":
    return strategy
  table = AUTO_STRATEGY.get(backend or jax.default_backend(), {1: "vmap"})
  return table[max(k for k in table if k <= max(num, 1))]
