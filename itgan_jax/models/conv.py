"""The convolutional networks of the official CIFAR-10 / SVHN scripts (papers.md A.3), sized by config.

D (weight-normalised, lReLU 0.2, 3x3 convs, scales frozen after data-dependent init): input dropout
or Gaussian noise -> c1 -> c1 -> c1 stride 2 -> dropout 0.5 -> c2 -> c2 -> c2 stride 2 -> dropout 0.5
-> c2 3x3 valid -> NIN c2 -> NIN c2 -> global average pool -> [minibatch features] -> dense K
(trainable scale, init_stdv 0.1). CIFAR: c1 = 96, c2 = 192; SVHN FM: 64 / 128. FM scripts: input
dropout 0.2; MD scripts: input Gaussian noise 0.2 and `nn.MinibatchLayer(100 kernels x 5)` between
the pool and the dense layer. `first_pad` > 1 adapts 28x28 inputs (official MNIST work-in-progress MD
script: first conv pad 3, so 28 -> 32 and the rest of the network is the CIFAR one).

G: z -> dense (s*s*c0, W ~ N(0, 0.05)) -> norm -> ReLU -> reshape -> [5x5 stride-2 deconv ->
norm -> ReLU]* -> weight-normalised 5x5 stride-2 deconv (trainable scale, init_stdv 0.1,
data-dependent init on the init batch as the official `init=True` pass) -> tanh. CIFAR: s = 4,
c = 512, 256, 128 -> 32x32x3; the MNIST MD config uses s = 7, c = 256, 128 -> 28x28x1. Deconvs are
the official `Deconv2DLayer` (the adjoint of a stride-2 conv with 'half' padding). Norm:
  'batch'  official `nn.batch_norm(..., g=None)`: batch statistics always, eps 1e-6, learned bias,
           no scale. As in the official G the dense layer's norm acts on its (s*s*c0) outputs before
           the reshape (statistics per unit) and the deconvs' norms per channel.
  'vbn' / 'vbnl' / 'vbnlp'  virtual batch norm (the paper's CIFAR samples; imagenet/generator.py):
           a fixed reference z (`vbn_ref` collection, drawn once at init from the latent
           distribution) is prepended to every batch, every norm uses it as the reference, the
           reference rows are dropped at the output. As in the imagenet G the dense layer's output
           is reshaped first, so all VBN statistics are per channel.
  'none'   no normalisation; the linear layers get biases.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from itgan_jax.nn import conv as conv_lib
from itgan_jax.nn.batchnorm import BatchStatNorm
from itgan_jax.nn.minibatch import MinibatchDiscrimination
from itgan_jax.nn.noise import GaussianNoise
from itgan_jax.nn.vbn import VARIANTS as VBN_VARIANTS
from itgan_jax.nn.vbn import VirtualBatchNorm, with_reference
from itgan_jax.nn.weightnorm import WNConv, WNConvTranspose, WNDense

G_NORMS = ("batch",) + VBN_VARIANTS + ("none",)


def lrelu(x):
  return jnp.maximum(x, 0.2 * x)


def first_conv_padding(image_size: int) -> int:
  """Padding of D's first 3x3 conv so that its output is 32x32 (CIFAR: 1; MNIST 28x28: 3)."""
  if image_size > 32 or (32 - image_size) % 2:
    raise ValueError(f"the conv model family takes square images of side 32 or 32 - 2k (e.g. 28), "
                     f"got {image_size}")
  return (32 - image_size) // 2 + 1


class ConvDiscriminator(nn.Module):
  """Official CIFAR/SVHN D; returns (logits, (pooled features,))."""
  channels: Sequence[int] = (96, 192)
  num_classes: int = 10
  input_dropout: float = 0.2
  input_noise: float = 0.0
  hidden_dropout: float = 0.5
  minibatch_kernels: int = 0
  minibatch_dim: int = 5
  first_pad: int = 1

  @property
  def batch_independent(self) -> bool:
    return self.minibatch_kernels == 0  # minibatch features need statistics per pure batch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True):
    c1, c2 = self.channels
    h = nn.Dropout(self.input_dropout, deterministic=not train)(x) if self.input_dropout else x
    h = GaussianNoise(self.input_noise)(h, train=train)
    h = lrelu(WNConv(c1, kernel_size=(3, 3), padding=self.first_pad)(h))
    h = lrelu(WNConv(c1, kernel_size=(3, 3), padding=1)(h))
    h = lrelu(WNConv(c1, kernel_size=(3, 3), strides=2, padding=1)(h))
    if self.hidden_dropout:
      h = nn.Dropout(self.hidden_dropout, deterministic=not train)(h)
    h = lrelu(WNConv(c2, kernel_size=(3, 3), padding=1)(h))
    h = lrelu(WNConv(c2, kernel_size=(3, 3), padding=1)(h))
    h = lrelu(WNConv(c2, kernel_size=(3, 3), strides=2, padding=1)(h))
    if self.hidden_dropout:
      h = nn.Dropout(self.hidden_dropout, deterministic=not train)(h)
    h = lrelu(WNConv(c2, kernel_size=(3, 3), padding=0)(h))
    h = lrelu(WNConv(c2, kernel_size=(1, 1), padding=0)(h))
    h = lrelu(WNConv(c2, kernel_size=(1, 1), padding=0)(h))
    pooled = jnp.mean(h, axis=(1, 2))
    h = pooled
    if self.minibatch_kernels:
      h = MinibatchDiscrimination(self.minibatch_kernels, self.minibatch_dim)(h)
    logits = WNDense(self.num_classes, init_stdv=0.1, train_scale=True)(h)
    return logits, (pooled,)


class HalfDeconv(nn.Module):
  """Official `Deconv2DLayer` (W ~ N(0, 0.05)): the adjoint of a stride-s conv with padding k // 2,
  mapping H -> s * H (same alignment as `WNConvTranspose`)."""
  features: int
  kernel_size: Sequence[int] = (5, 5)
  strides: int = 2
  use_bias: bool = False
  kernel_init_std: float = 0.05

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    w = self.param("kernel", nn.initializers.normal(self.kernel_init_std),
                   (kh, kw, x.shape[-1], self.features))
    y = conv_lib.conv_transpose2d(x, w, (self.strides, self.strides))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y


class ConvGenerator(nn.Module):
  """Official CIFAR/SVHN G; output (N, H, W, C) in [-1, 1] with H = start_size * 2^len(channels)."""
  start_size: int = 4
  channels: Sequence[int] = (512, 256, 128)
  out_channels: int = 3
  norm: str = "batch"
  num_ref: int = 100
  ref_dist: str = "uniform01"

  def _norm(self, h):
    if self.norm == "batch":
      return BatchStatNorm(use_scale=False, eps=1e-6)(h)
    if self.norm == "none":
      return h
    return VirtualBatchNorm(num_ref=self.num_ref, variant=self.norm)(h)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True):
    del train  # batch statistics always (official); VBN uses its fixed reference batch
    if self.norm not in G_NORMS:
      raise ValueError(f"model.g_norm={self.norm!r} is not one of {G_NORMS}")
    vbn = self.norm in VBN_VARIANTS
    if vbn:  # reference rows first: drawn once at init, never trained, dropped at the output
      z = with_reference(self, z, self.num_ref, self.ref_dist)
    s, c0 = self.start_size, self.channels[0]
    bias = self.norm == "none"
    h = nn.Dense(s * s * c0, use_bias=bias, kernel_init=nn.initializers.normal(0.05))(z)
    if self.norm == "batch":  # official: BN on the dense layer's units, then reshape
      h = nn.relu(self._norm(h)).reshape((h.shape[0], s, s, c0))
    else:
      h = nn.relu(self._norm(h.reshape((h.shape[0], s, s, c0))))
    for c in self.channels[1:]:
      h = nn.relu(self._norm(HalfDeconv(c, use_bias=bias)(h)))
    out = jnp.tanh(WNConvTranspose(self.out_channels, kernel_size=(5, 5), strides=2, init_stdv=0.1,
                                   train_scale=True)(h))
    return out[self.num_ref:] if vbn else out
