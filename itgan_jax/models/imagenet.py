"""The ImageNet 128x128 networks of openai/improved-gan `imagenet/` (papers.md A.7), sized by config.

G (`imagenet/generator.py`, gf = 64, image side S = 128, s = S / 32):
  z ~ U(-1, 1)^8192 -> linear s*s*8gf (+ bias) -> reshape -> VBN -> ReLU -> concat U(-1, 1) noise
  s x s x gf -> deconv 5x5 s2 4gf (2s) -> VBN ReLU -> concat noise gf -> 2gf (4s) -> concat gf/2
  -> gf (8s) -> concat gf/4 -> gf (16s) -> concat gf/8 -> gf (32s = S) -> concat gf/8 (the official
  code computes gf/16 as `sixteenth` but uses `eighth`) -> deconv 5x5 stride 1 to 3 channels
  (W ~ N(0, 0.075), bias -0.45) -> tanh. Every other weight N(0, 0.02), biases 0; noise channel
  counts are at least 1. VBN ('vbn' of `nn/vbn.py`: gamma ~ N(1, 0.02), eps 1e-5) uses a fixed
  reference batch: the reference z *and* the reference per-pixel noises are drawn once at init
  (official `make_z(is_ref=True)` makes every z of the reference pass a non-trainable variable)
  into the `vbn_ref` collection; the live per-pixel noises are fresh draws from the `noise` rng
  stream.
D (`imagenet/discriminator.py`, df = 64), on the joint batch concat(real, fake) of 2n rows:
  x + N(0, 0.1^2) -> 3x3 convs, each followed by BN-cross and lReLU 0.2: df s2, 2df s2, 4df s2,
  4df s1, 4df s1, 8df s2, 8df s2 -> flatten -> linear 40df -> BN-cross -> lReLU -> joint minibatch
  features (300 kernels x 50, `nn/minibatch.JointMinibatchFeatures`) -> linear to K + 1 = 1001
  logits (1000 classes + an explicit fake logit). GAN logit = LSE(class logits) - fake logit.
  Conv weights: truncated N(0, 0.02) (TF `truncated_normal_initializer`), linear N(0, 0.02),
  biases 0. BN-cross (`ops.batch_norm_cross`): the first half of the channels is normalised with
  the mean/biased variance of the *real* half of the batch, the second half of the channels with
  those of the *fake* half (eps 1e-5, gamma ~ N(1, 0.02), beta 0, two sets); always batch
  statistics.
Convolutions use TF 'SAME' padding (stride 2: the extra row/column at the bottom/right), and the
deconvs are TF `conv2d_transpose` with 'SAME' padding, kernel stored as TF's (k, k, out, in).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from itgan_jax.nn import conv as conv_lib
from itgan_jax.nn.minibatch import JointMinibatchFeatures
from itgan_jax.nn.noise import GaussianNoise
from itgan_jax.nn.vbn import VirtualBatchNorm, make_reference_batch, with_reference

DOWNSAMPLE = 32  # D's five stride-2 convs; G's five stride-2 deconvs from side S / 32


def lrelu(x: jax.Array) -> jax.Array:
  """Official `lrelu(x, 0.2)` = 0.6 x + 0.4 |x| = max(x, 0.2 x)."""
  return jnp.maximum(x, 0.2 * x)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """(before, after) padding of TF 'SAME' for one spatial dimension of a forward conv."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def gan_logit(class_logits: jax.Array) -> jax.Array:
  """d = LSE(class logits) - fake logit (the last column): the official `gan_logits`."""
  return jax.nn.logsumexp(class_logits[:, :-1], axis=1) - class_logits[:, -1]


class TFConv(nn.Module):
  """TF `ops.conv2d`: 'SAME' cross-correlation, W ~ truncated N(0, std), bias 0."""
  features: int
  kernel: int = 3
  stride: int = 2
  stddev: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel, self.stride
    w = self.param("kernel", nn.initializers.truncated_normal(self.stddev),
                   (k, k, x.shape[-1], self.features))
    pads = tuple(tf_same_padding(n, k, s) for n in x.shape[1:3])
    y = conv_lib.conv2d(x, w, (s, s), pads)
    return y + self.param("bias", nn.initializers.zeros, (self.features,))


def tf_conv2d_transpose(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
  """TF `conv2d_transpose(x, w, output side = stride * input side, 'SAME')` with TF's kernel
  layout (k, k, out, in): the adjoint of the 'SAME' conv with this kernel from the output size to
  the input size, y[n, u*s + a - p, v*s + b - p, o] += x[n, u, v, i] w[a, b, o, i] (p = SAME
  padding before). On CPU through `conv_lib.conv2d` on the zero-dilated input (its loop-proof
  VJP)."""
  k, s = w.shape[0], stride
  pads = []
  for n in x.shape[1:3]:
    before, after = tf_same_padding(n * s, k, s)
    rest = n * s + before + after - k - (n - 1) * s  # rows of the forward input never read
    pads.append((k - 1 - before, k - 1 - after + rest))
  w_adjoint = jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2))  # (k, k, in, out)
  if jax.default_backend() == "cpu":
    return conv_lib.conv2d(conv_lib.dilate(x, (s, s)), w_adjoint, (1, 1), tuple(pads))
  return jax.lax.conv_general_dilated(x, w_adjoint, (1, 1), tuple(pads), lhs_dilation=(s, s),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


class TFDeconv(nn.Module):
  """TF `ops.deconv2d` (`conv2d_transpose`, 'SAME'): output side = stride * input side; kernel
  (k, k, out, in) ~ N(0, std), bias `bias_init`. It is the adjoint of the 'SAME' conv with this
  kernel from the output size to the input size:
    y[n, u*s + a - p, v*s + b - p, o] += x[n, u, v, i] w[a, b, o, i],  p = SAME padding before."""
  features: int
  kernel: int = 5
  stride: int = 2
  stddev: float = 0.02
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel, self.stride
    w = self.param("kernel", nn.initializers.normal(self.stddev),
                   (k, k, self.features, x.shape[-1]))
    y = tf_conv2d_transpose(x, w, s)
    return y + self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))


class BatchNormCross(nn.Module):
  """Official `batch_norm_cross` on a joint batch (first N/2 rows real, the rest fake): channels
  [:C/2] use the statistics of the real rows, channels [C/2:] those of the fake rows."""
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    vector = x.ndim == 2
    if vector:  # official: reshaped to (N, 1, 1, C)
      x = x[:, None, None, :]
    n, c = x.shape[0], x.shape[-1]
    if n % 2 or c % 2:
      raise ValueError(f"BatchNormCross needs an even number of rows (real then fake) and of "
                       f"channels, got input shape {x.shape}")
    half_c, half_n = c // 2, n // 2
    outs = []
    for part, rows in ((0, slice(0, half_n)), (1, slice(half_n, n))):
      ch = x[..., part * half_c:(part + 1) * half_c]
      ref = ch[rows]
      mean = jnp.mean(ref, axis=(0, 1, 2))
      var = jnp.mean(jnp.square(ref - mean), axis=(0, 1, 2))
      gamma = self.param(f"gamma{part}", lambda k, s: 1.0 + 0.02 * jax.random.normal(k, s),
                         (half_c,))
      beta = self.param(f"beta{part}", nn.initializers.zeros, (half_c,))
      outs.append((ch - mean) * jax.lax.rsqrt(var + self.eps) * gamma + beta)
    y = jnp.concatenate(outs, axis=-1)
    return y[:, 0, 0, :] if vector else y


def noise_channels(gf_dim: int) -> tuple[int, ...]:
  """Per-pixel noise channels after h0..h5: gf, gf, gf/2, gf/4, gf/8, gf/8 (each >= 1)."""
  return tuple(max(gf_dim // d, 1) for d in (1, 1, 2, 4, 8, 8))


class ImagenetGenerator(nn.Module):
  """The official ImageNet G (module docstring); `z` (N, z_dim) -> (N, S, S, 3) in [-1, 1]."""
  image_size: int = 128
  gf_dim: int = 64
  num_ref: int = 16
  out_stddev: float = 0.075
  out_bias: float = -0.45

  @property
  def channels(self) -> tuple[int, ...]:
    g = self.gf_dim
    return (8 * g, 4 * g, 2 * g, g, g, g)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True,
               row_keys: jax.Array | None = None) -> jax.Array:
    """`row_keys` (N keys): draw row i's noises from `fold_in(row_keys[i], level)` instead of the
    `noise` stream (samples whose noise depends on their own latent only)."""
    del train  # VBN with its reference batch always (official)
    r, n = self.num_ref, z.shape[0]
    z = with_reference(self, z, r, "uniform_pm1")
    s = self.image_size // DOWNSAMPLE
    h = nn.Dense(s * s * self.channels[0], kernel_init=nn.initializers.normal(0.02),
                 bias_init=nn.initializers.zeros, name="h0_lin")(z)
    h = h.reshape((h.shape[0], s, s, self.channels[0]))
    for level, (c_noise, c_next) in enumerate(zip(noise_channels(self.gf_dim),
                                                  self.channels[1:] + (None,))):
      h = nn.relu(VirtualBatchNorm(num_ref=r, variant="vbn", name=f"vbn_{level}")(h))
      shape = h.shape[1:3] + (c_noise,)
      ref_noise = self.variable("vbn_ref", f"h{level}z", lambda sh=shape: make_reference_batch(
          self.make_rng("vbn"), (r,) + sh, "uniform_pm1")).value
      if row_keys is None:
        live_noise = jax.random.uniform(self.make_rng("noise"), (n,) + shape, h.dtype, -1.0, 1.0)
      else:
        live_noise = jax.vmap(lambda k, lv=level, sh=shape: jax.random.uniform(
            jax.random.fold_in(k, lv), sh, h.dtype, -1.0, 1.0))(row_keys)
      h = jnp.concatenate([h, jnp.concatenate([ref_noise.astype(h.dtype), live_noise])], axis=-1)
      if c_next is not None:
        h = TFDeconv(c_next, name=f"h{level + 1}")(h)
    out = TFDeconv(3, stride=1, stddev=self.out_stddev, bias_init=self.out_bias, name="h6")(h)
    return jnp.tanh(out)[r:]


class ImagenetDiscriminator(nn.Module):
  """The official ImageNet D (module docstring) on a joint batch concat(real, fake).

  Returns (class logits (2n, num_classes + 1), (the 40df features before the minibatch layer,)).
  """
  df_dim: int = 64
  num_classes: int = 1000
  input_noise: float = 0.1
  minibatch_kernels: int = 300
  minibatch_dim: int = 50
  fc_mult: int = 40
  strides: Sequence[int] = (2, 2, 2, 1, 1, 2, 2)
  widths: Sequence[int] = (1, 2, 4, 4, 4, 8, 8)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True):
    h = GaussianNoise(self.input_noise)(x, train=train)
    for i, (mult, stride) in enumerate(zip(self.widths, self.strides)):
      h = TFConv(self.df_dim * mult, stride=stride, name=f"h{i}_conv")(h)
      h = lrelu(BatchNormCross(name=f"bn_{i}")(h))
    h = h.reshape((h.shape[0], -1))
    h = nn.Dense(self.df_dim * self.fc_mult, kernel_init=nn.initializers.normal(0.02),
                 bias_init=nn.initializers.zeros, name="h7")(h)
    feats = lrelu(BatchNormCross(name="bn_7")(h))
    h = JointMinibatchFeatures(self.minibatch_kernels, self.minibatch_dim, name="minibatch")(feats)
    logits = nn.Dense(self.num_classes + 1, kernel_init=nn.initializers.normal(0.02),
                      bias_init=nn.initializers.zeros, name="indiv_logits")(h)
    return logits, (feats,)
