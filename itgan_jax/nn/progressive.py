"""Layers of Progressive Growing of GANs (Karras et al. 2018; papers.md B.2-B.3).

Official code: tkarras/progressive_growing_of_gans, branch `original-theano-version` `network.py`
(the code of the paper's CIFAR-10 and Table 1 runs) and `master` `networks.py` (TensorFlow). All
tensors are NHWC here (the official codes are NCHW, so their channel axis 1 is our last axis).

- Equalized learning rate (Sec. 4.1): w_hat = w * c, c = gain / sqrt(fan_in), w ~ N(0, 1), the
  product taken at run time on every forward pass; the bias (zero-initialised) is added after the
  scaled product and is not scaled.
- Pixelwise feature normalisation (Sec. 4.2): b = a / sqrt(mean_c a_c^2 + 1e-8).
- Minibatch standard deviation (Sec. 3): one scalar per group, the mean over features and pixels
  of the biased per-feature std over the group, appended as one feature map.
- Nearest-neighbour upsampling and 2x2 average pooling; toRGB / fromRGB 1x1 convolutions.
- Layer normalisation as Theano's `LayerNormLayer` (Table 1 rows (a)-(c), D only).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from itgan_jax.nn import conv as conv_lib

SQRT2 = math.sqrt(2.0)


def lrelu(x: jax.Array, slope: float = 0.2) -> jax.Array:
  """Leaky ReLU max(x, 0.2 x) (Theano `LeakyRectify(0.2)`, TF `leaky_relu`)."""
  return jnp.maximum(x, slope * x)


def _weight(module: nn.Module, shape: tuple[int, ...], fan_in: int, gain: float,
            use_wscale: bool, dtype) -> jax.Array:
  """The kernel used in the forward pass (TF `get_weight`).

  use_wscale: stored w ~ N(0, 1), returned w * gain / sqrt(fan_in) (the scale applied at every
  call, so an optimizer step on w moves the effective weight by c times the step);
  otherwise stored w ~ N(0, gain^2 / fan_in) (He init) and used as is.
  """
  std = gain / math.sqrt(fan_in)
  if use_wscale:
    return module.param("kernel", nn.initializers.normal(1.0), shape).astype(dtype) * std
  return module.param("kernel", nn.initializers.normal(std), shape).astype(dtype)


class EqualizedDense(nn.Module):
  """y = x (w c) + b on the last axis, c = gain / sqrt(fan_in), fan_in = x.shape[-1].

  TF `dense` + `apply_bias`; Theano `WScaleLayer(DenseLayer)`. `use_wscale=False` gives the plain
  He-initialised layer of Table 1 rows (a)-(e*). Theano's `WScaleLayer` divides the He draw by its
  empirical RMS instead of the constant c (about 1 % off for toRGB; next_features.md 7.3); we use the constant, as TF.
  """
  features: int
  gain: float = SQRT2
  use_wscale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    w = _weight(self, (fan_in, self.features), fan_in, self.gain, self.use_wscale, x.dtype)
    y = jnp.dot(x, w)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
    return y


class EqualizedConv(nn.Module):
  """y = conv(x, w c) + b (NHWC, stride 1), c = gain / sqrt(kh kw C_in).

  TF `conv2d` + `apply_bias`; Theano `WScaleLayer(Conv2DLayer)`. padding 'SAME' (Theano pad=1 for
  3x3, 0 for 1x1) or 'VALID' (D's final 4x4 conv, Theano pad=0).
  """
  features: int
  kernel_size: int | Sequence[int] = 3
  gain: float = SQRT2
  padding: str = "SAME"
  use_wscale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"EqualizedConv expects NHWC input, got shape {x.shape}")
    ks = self.kernel_size
    kh, kw = (ks, ks) if isinstance(ks, int) else tuple(ks)
    fan_in = kh * kw * x.shape[-1]
    w = _weight(self, (kh, kw, x.shape[-1], self.features), fan_in, self.gain, self.use_wscale,
                x.dtype)
    if self.padding not in ("SAME", "VALID"):
      raise ValueError(f"EqualizedConv padding={self.padding!r} must be 'SAME' or 'VALID'")
    pads = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)) if self.padding == "SAME" \
        else ((0, 0), (0, 0))
    # conv_lib.conv2d: the loop-proof CPU VJP, also for the gradient penalty's double backward.
    y = conv_lib.conv2d(x, w, (1, 1), pads)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
    return y


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """b = a / sqrt(mean_c a_c^2 + eps) over the last axis (paper Eq. in Sec. 4.2; Theano
  `PixelNormLayer`, TF `pixel_norm`). The mean of squares, not the variance (no centring).
  Computed in float32 and cast back (as BatchStatNorm does for bfloat16 inputs)."""
  xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  return (xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + eps)
          ).astype(x.dtype)


def minibatch_stddev(x: jax.Array, group_size: int | None = None, eps: float = 1e-8) -> jax.Array:
  """concat(x, s) with s one feature map holding the group's minibatch-stddev scalar.

  For a group of G samples: std = sqrt(mean_g (x_g - mean_g x)^2 + eps) per feature and pixel
  (biased, eps inside the sqrt: Theano `Tstdeps`, TF `minibatch_stddev_layer`), s = mean of std over
  every feature and pixel; s is tiled over the group's samples and pixels and appended as the last
  channel. group_size None: the whole minibatch is one group (paper / Theano `mbstat_avg='all'`).
  An int G: TF's grouping, x reshaped to [G, N/G, ...], so sample n is in group n mod (N/G)
  (strided, not consecutive); like TF, G is capped at N (`tf.minimum(group_size, N)`).
  Computed in float32 (TF casts to float32) and cast back.
  """
  n = x.shape[0]
  if x.ndim < 2:
    raise ValueError(f"minibatch_stddev expects (N, ..., C) features, got shape {x.shape}")
  if group_size is None:
    g = n
  else:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
      raise ValueError(f"minibatch_stddev group_size={group_size!r} must be None (whole batch) or "
                       "an integer >= 1")
    g = min(group_size, n)
  if n % g:
    raise ValueError(f"minibatch_stddev: the batch of {n} is not a multiple of the group size {g}; "
                     "use a batch size divisible by the group size (model.mbstd_group_size), or "
                     "None for one group of the whole batch")
  m = n // g
  y = x.astype(jnp.promote_types(x.dtype, jnp.float32)).reshape((g, m) + x.shape[1:])
  y = y - jnp.mean(y, axis=0, keepdims=True)
  std = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + eps)          # (M, ...)
  s = jnp.mean(std.reshape((m, -1)), axis=1)                     # (M,)
  s = jnp.tile(s, g).astype(x.dtype)                             # sample n -> group n mod M
  stat = jnp.broadcast_to(s.reshape((n,) + (1,) * (x.ndim - 1)), x.shape[:-1] + (1,))
  return jnp.concatenate([x, stat], axis=-1)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of NHWC x by `factor` (Theano `Upscale2DLayer`, TF
  `upscale2d`): y[:, i, j] = x[:, i // f, j // f]."""
  if factor == 1:
    return x
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def downsample_avg(x: jax.Array, factor: int = 2) -> jax.Array:
  """factor x factor average pooling, stride = factor (Theano `Downscale2DLayer`,
  'average_exc_pad' without padding; TF `downscale2d`)."""
  if factor == 1:
    return x
  n, h, w, c = x.shape
  if h % factor or w % factor:
    raise ValueError(f"downsample_avg: spatial size {h}x{w} is not a multiple of {factor}")
  return jnp.mean(x.reshape((n, h // factor, factor, w // factor, factor, c)), axis=(2, 4))


class ToRGB(nn.Module):
  """G's 1x1 output conv to image channels, gain 1, linear (Theano `NINLayer(..., linear,
  HeNormal(1.0))` + `WScaleLayer`; TF `torgb`)."""
  num_channels: int = 3
  use_wscale: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return EqualizedConv(self.num_channels, 1, gain=1.0, use_wscale=self.use_wscale,
                         name="conv")(x)


class FromRGB(nn.Module):
  """D's 1x1 input conv, gain sqrt(2), followed by lReLU 0.2 (Theano `NINLayer(..., lrelu)`)."""
  features: int
  use_wscale: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return lrelu(EqualizedConv(self.features, 1, gain=SQRT2, use_wscale=self.use_wscale,
                               name="conv")(x))


class LayerNorm(nn.Module):
  """Theano `LayerNormLayer` (ProGAN `network.py`, D of Table 1 rows (a)-(c)), per sample over
  every non-batch axis (H, W, C):
    v = x - mean(x);  y = v / sqrt(mean(v^2) + 1e-4) * gain + b
  with ONE learned scalar gain (init 1) and a per-channel bias b (init 0). In Theano the layer
  "steals" the bias and the nonlinearity of the conv it wraps, so the conv has no bias of its own
  and the caller applies the activation after this layer.
  """
  eps: float = 1e-4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_dtype = x.dtype
    xf = x.astype(jnp.promote_types(in_dtype, jnp.float32))
    axes = tuple(range(1, x.ndim))
    v = xf - jnp.mean(xf, axis=axes, keepdims=True)
    v = v * jax.lax.rsqrt(jnp.mean(jnp.square(v), axis=axes, keepdims=True) + self.eps)
    v = v * self.param("gain", nn.initializers.ones, ())
    v = v + self.param("bias", nn.initializers.zeros, (x.shape[-1],))
    return v.astype(in_dtype)
