"""Progressive Growing of GANs networks (Karras et al. 2018; papers.md B.2, B.3, B.7).

Follows the Theano `network.py` `G_paper` / `D_paper` of tkarras/progressive_growing_of_gans
(branch `original-theano-version`, the code of the CIFAR-10 and Table 1 runs), NHWC. Widths
nf(stage) = min(int(fmap_base / 2^(stage * fmap_decay)), fmap_max); CIFAR-10: fmap_base 4096,
fmap_max 128 -> 128 maps everywhere. Level l in [0, L], L = log2(resolution) - 2, works at
4 * 2^l pixels (stage r = l + 2 in the official code's 2^r notation).

G: z -> [pixel norm] -> dense latent -> 4*4*nf(1) with gain sqrt(2)/4 (the Theano 4x4 'full'
conv on a 1x1 input, whose He fan_in is 16 C; TF `dense(..., gain=np.sqrt(2)/4)`), reshape 4x4,
per-channel bias -> act -> norm -> conv3x3 nf(1) -> act -> norm; level l > 0: nearest upsample x2
-> conv3x3 nf(l+1) -> act -> norm -> conv3x3 nf(l+1) -> act -> norm. toRGB_l (1x1, gain 1, linear)
at every level. Output at level l > 0: (1 - alpha) upsample(toRGB_{l-1}(h_{l-1})) + alpha
toRGB_l(h_l) (Theano `LODSelectLayer`); optional tanh after the blend (Theano `tanh_at_end`).
Normalisation (`norm`):
  'pixel'  conv + bias -> act -> pixel norm (the paper; Theano `PN(WS(conv))`).
  'batch'  conv -> batch norm (learned scale and bias, eps 1e-4, batch statistics) -> act: Theano
           `BN(WS(conv))` is `lasagne.layers.batch_norm`, which removes the conv's bias and moves
           the activation after the norm (Table 1 rows (a)-(c)). Theano's G is always evaluated
           with deterministic=False (training and `gen_fn` use `eval_nd`, snapshots `eval`), so
           its batch statistics are used always; we keep no running averages (`train` ignored).
  'vbn' / 'vbnl' / 'vbnlp'  the Improved-GAN virtual batch norm (nn/vbn.py) in the place of batch
           norm: a fixed reference z ~ N(0, I) (`vbn_ref` collection, drawn at init from the `vbn`
           rng stream) is prepended, every norm uses it, its rows are dropped at the output.
  'none'   conv + bias -> act.

D: fromRGB_l (1x1, gain sqrt(2), lReLU) at the input's level; block at 2^r (level l = r - 2 > 0):
conv3x3 nf(r-1) -> lReLU -> conv3x3 nf(r-2) -> lReLU -> 2x2 average pool (Theano: the pool after
the activation; TF's fused default pools before the bias and activation, a different function).
Fade at level l > 0: h = (1 - alpha) fromRGB_{l-1}(avgpool(x)) + alpha block_l(fromRGB_l(x)),
then blocks l-1 .. 1 and the 4x4 head: [minibatch stddev (+1 channel)] -> conv3x3 nf(1) -> lReLU
-> conv4x4 VALID nf(0) -> lReLU -> flatten -> [minibatch discrimination] -> dense 1 (gain 1,
linear). Theano inserts `MinibatchStatConcatLayer` right after the last LOD select (the start of
the 4x4 block) and `MinibatchLayer` after `D1a` (the 4x4 valid conv), before `Dscores`. With
layer_norm, every 3x3/4x4 conv of D is followed by Theano's LayerNormLayer (nn/progressive.py),
which takes over the conv's bias; fromRGB and the output dense are not normalised.

One parameter tree at full size: `init` (at any level) creates every block, toRGB and fromRGB (the
unused ones are run on the real activations in G and on zeros in D while initialising), so the
tree is the same whatever level is later applied; checkpoints and EMA are level-independent.
`level` is a static Python int (one compiled program per level); `alpha` may be traced.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.nn import progressive as pg
from itgan_jax.nn.batchnorm import BatchStatNorm
from itgan_jax.nn.minibatch import MinibatchDiscrimination
from itgan_jax.nn.vbn import VARIANTS as VBN_VARIANTS
from itgan_jax.nn.vbn import VirtualBatchNorm, with_reference

G_NORMS = ("pixel", "batch") + VBN_VARIANTS + ("none",)
G_ACTIVATIONS = ("lrelu", "relu")


def num_features(stage: int, fmap_base: int, fmap_max: int, fmap_decay: float = 1.0) -> int:
  """nf(stage) = min(int(fmap_base / 2^(stage * fmap_decay)), fmap_max) (Theano/TF `nf`)."""
  return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)


def num_levels(resolution: int) -> int:
  """L + 1 for a power-of-two resolution >= 4 (L = log2(resolution) - 2); clear error otherwise."""
  if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 4 or (
      resolution & (resolution - 1)):
    raise ValueError(f"progressive networks need a power-of-two resolution >= 4, got {resolution!r}")
  return int(math.log2(resolution)) - 1


def _check_level(level, top: int) -> int:
  if level is None:
    return top
  if isinstance(level, np.integer):
    level = int(level)
  if isinstance(level, bool) or not isinstance(level, int):
    raise TypeError(f"level must be a static Python int in [0, {top}] or None, got {level!r} "
                    "(mark it static under jit)")
  if not 0 <= level <= top:
    raise ValueError(f"level={level} is outside [0, {top}] (level l works at 4 * 2^l pixels)")
  return level


def _lerp(old: jax.Array, new: jax.Array, alpha) -> jax.Array:
  """(1 - alpha) old + alpha new: exactly old at alpha 0 and exactly new at alpha 1."""
  alpha = jnp.asarray(alpha, new.dtype)
  return (1.0 - alpha) * old + alpha * new


class _GBlock(nn.Module):
  """One G level: the 4x4 input block (level 0) or upsample + two 3x3 convs."""
  level: int
  features: int
  norm: str
  activation: str
  use_wscale: bool
  num_ref: int

  def _post(self, h: jax.Array, i: int) -> jax.Array:
    """bias/norm, activation, pixel norm in the official order for `norm`."""
    act = pg.lrelu if self.activation == "lrelu" else jax.nn.relu
    if self.norm == "batch":
      return act(BatchStatNorm(use_scale=True, eps=1e-4, name=f"norm{i}")(h))
    if self.norm in VBN_VARIANTS:
      return act(VirtualBatchNorm(num_ref=self.num_ref, variant=self.norm, name=f"norm{i}")(h))
    h = act(h)
    return pg.pixel_norm(h) if self.norm == "pixel" else h

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    f, ws = self.features, self.use_wscale
    bias = self.norm in ("pixel", "none")  # batch norm / VBN take over the conv bias (lasagne)
    if self.level == 0:
      h = pg.EqualizedDense(16 * f, gain=pg.SQRT2 / 4, use_wscale=ws, use_bias=False,
                            name="dense")(x).reshape((x.shape[0], 4, 4, f))
      if bias:  # one bias per channel, after the reshape (conv bias; TF apply_bias)
        h = h + self.param("bias", nn.initializers.zeros, (f,)).astype(h.dtype)
      h = self._post(h, 0)
    else:
      h = self._post(pg.EqualizedConv(f, 3, use_wscale=ws, use_bias=bias, name="conv0")(
          pg.upsample_nearest(x)), 0)
    return self._post(pg.EqualizedConv(f, 3, use_wscale=ws, use_bias=bias, name="conv1")(h), 1)


class ProgressiveGenerator(nn.Module):
  """ProGAN G (Theano `G_paper`); see the module docstring. Output (N, 4*2^level, same,
  num_channels); `num_ref` is the VBN reference size (norm 'vbn*' only)."""
  resolution: int
  num_channels: int = 3
  latent_dim: int = 128
  fmap_base: int = 4096
  fmap_max: int = 128
  fmap_decay: float = 1.0
  normalize_latents: bool = True
  use_wscale: bool = True
  norm: str = "pixel"
  activation: str = "lrelu"
  tanh_output: bool = False
  num_ref: int = 100

  def nf(self, stage: int) -> int:
    return num_features(stage, self.fmap_base, self.fmap_max, self.fmap_decay)

  @nn.compact
  def __call__(self, z: jax.Array, *, level: int | None = None, alpha=1.0,
               train: bool = True) -> jax.Array:
    del train  # batch statistics always (Theano evaluates G with deterministic=False)
    if self.norm not in G_NORMS:
      raise ValueError(f"model.g_norm={self.norm!r} is not one of {G_NORMS}")
    if self.activation not in G_ACTIVATIONS:
      raise ValueError(f"model.g_activation={self.activation!r} is not one of {G_ACTIVATIONS}")
    top = num_levels(self.resolution) - 1
    level = _check_level(level, top)
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(f"ProgressiveGenerator expects latents of shape (N, {self.latent_dim}), "
                       f"got {z.shape}")
    vbn = self.norm in VBN_VARIANTS
    if vbn:  # reference rows first (z ~ N(0, I) as the live latents), dropped at the output
      z = with_reference(self, z, self.num_ref, "normal")
    h = pg.pixel_norm(z) if self.normalize_latents else z
    # While initialising, every block and toRGB runs so that the full tree is created.
    last = top if self.is_initializing() else level
    rgb = {}
    for l in range(last + 1):
      h = _GBlock(l, self.nf(l + 1), self.norm, self.activation, self.use_wscale, self.num_ref,
                  name=f"block{l}")(h)
      if l >= level - 1 or self.is_initializing():
        rgb[l] = pg.ToRGB(self.num_channels, self.use_wscale, name=f"to_rgb{l}")(h)
    out = rgb[level]
    if level > 0:
      out = _lerp(pg.upsample_nearest(rgb[level - 1]), out, alpha)
    if self.tanh_output:
      out = jnp.tanh(out)
    return out[self.num_ref:] if vbn else out


class _DBlock(nn.Module):
  """One D level > 0: conv3x3 nf(r-1) -> lReLU -> conv3x3 nf(r-2) -> lReLU -> 2x2 avgpool."""
  features: tuple[int, int]
  use_wscale: bool
  layer_norm: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = x
    for i, f in enumerate(self.features):
      h = pg.lrelu(_d_conv(f, 3, "SAME", self.use_wscale, self.layer_norm, f"conv{i}")(h))
    return pg.downsample_avg(h)


class _DConv(nn.Module):
  """Equalized conv, optionally followed by Theano's LayerNormLayer (which takes the bias)."""
  features: int
  kernel_size: int
  padding: str
  use_wscale: bool
  layer_norm: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = pg.EqualizedConv(self.features, self.kernel_size, padding=self.padding,
                         use_wscale=self.use_wscale, use_bias=not self.layer_norm, name="conv")(x)
    return pg.LayerNorm(name="layer_norm")(h) if self.layer_norm else h


def _d_conv(features, kernel_size, padding, use_wscale, layer_norm, name) -> _DConv:
  return _DConv(features, kernel_size, padding, use_wscale, layer_norm, name=name)


class ProgressiveDiscriminator(nn.Module):
  """ProGAN D (Theano `D_paper`); see the module docstring. Returns (logits (N, 1) float32,
  (features,)) with features the flattened output of the 4x4 valid conv (N, nf(0)): the input of
  the output dense, before the minibatch-discrimination features when those are on.

  mbstd_group_size: None = the whole minibatch (paper, Theano `mbstat_avg='all'`), an int G = TF's
  strided groups of G, 0 = off. minibatch_kernels > 0: Improved-GAN minibatch discrimination
  (Table 1 row (e*), `nn/minibatch.py` with its data-dependent init, the Theano init pass) INSTEAD
  of minibatch stddev (the stddev layer is then not inserted, whatever mbstd_group_size says).
  """
  resolution: int
  num_channels: int = 3
  fmap_base: int = 4096
  fmap_max: int = 128
  fmap_decay: float = 1.0
  use_wscale: bool = True
  mbstd_group_size: int | None = None
  minibatch_kernels: int = 0
  minibatch_dim: int = 5
  layer_norm: bool = False

  def nf(self, stage: int) -> int:
    return num_features(stage, self.fmap_base, self.fmap_max, self.fmap_decay)

  @property
  def uses_mbstd(self) -> bool:
    return self.minibatch_kernels == 0 and self.mbstd_group_size != 0

  @property
  def batch_independent(self) -> bool:
    """No cross-sample statistics (minibatch stddev / discrimination both off)."""
    return not self.uses_mbstd and self.minibatch_kernels == 0

  @nn.compact
  def __call__(self, x: jax.Array, *, level: int | None = None, alpha=1.0, train: bool = True):
    del train  # no stochastic layers (Theano gdrop is off in every published config)
    top = num_levels(self.resolution) - 1
    level = _check_level(level, top)
    side = 4 * 2 ** level
    if x.ndim != 4 or x.shape[1:] != (side, side, self.num_channels):
      raise ValueError(f"ProgressiveDiscriminator at level {level} expects images of shape "
                       f"(N, {side}, {side}, {self.num_channels}), got {x.shape}")
    ws, ln = self.use_wscale, self.layer_norm
    from_rgb = [pg.FromRGB(self.nf(l + 1), ws, name=f"from_rgb{l}") for l in range(top + 1)]
    blocks = {l: _DBlock((self.nf(l + 1), self.nf(l)), ws, ln, name=f"block{l}")
              for l in range(1, top + 1)}
    if self.is_initializing():  # create the parameters this level does not use (on zeros)
      for l in range(top + 1):
        if level - 1 <= l <= level:  # used below
          continue
        dummy = from_rgb[l](jnp.zeros((1, 4 * 2 ** l, 4 * 2 ** l, self.num_channels), x.dtype))
        if l > level:
          blocks[l](dummy)
    h = from_rgb[level](x)
    if level > 0:
      h = _lerp(from_rgb[level - 1](pg.downsample_avg(x)), blocks[level](h), alpha)
    for l in range(level - 1, 0, -1):
      h = blocks[l](h)
    if self.uses_mbstd:
      h = pg.minibatch_stddev(h, self.mbstd_group_size)
    h = pg.lrelu(_d_conv(self.nf(1), 3, "SAME", ws, ln, "head_conv0")(h))
    h = pg.lrelu(_d_conv(self.nf(0), 4, "VALID", ws, ln, "head_conv1")(h))
    features = h.reshape((h.shape[0], -1))
    h = features
    if self.minibatch_kernels:
      h = MinibatchDiscrimination(self.minibatch_kernels, self.minibatch_dim, name="minibatch")(h)
    logits = pg.EqualizedDense(1, gain=1.0, use_wscale=ws, name="out")(h)
    return logits.astype(jnp.float32), (features,)
