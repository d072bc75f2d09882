"""The convolutional networks of the official CIFAR-10 / SVHN scripts (papers.md A.3), sized by config.

D (weight-normalised, lReLU 0.2, 3x3 convs, scales frozen after data-dependent init): input dropout
or Gaussian noise -> c1 -> c1 -> c1 stride 2 -> dropout 0.5 -> c2 -> c2 -> c2 stride 2 -> dropout 0.5
-> c2 3x3 valid -> NIN c2 -> NIN c2 -> global average pool -> [minibatch features] -> dense K
(trainable scale, init_stdv 0.1). CIFAR: c1 = 96, c2 = 192; SVHN FM: 64 / 128. `first_pad` > 1
adapts 28x28 inputs (official MNIST work-in-progress MD script: first conv pad 3, 28 -> 32).

G: z -> dense (s*s*c0) -> norm -> ReLU -> [5x5 stride-2 deconv -> norm -> ReLU]* -> weight-normalised
5x5 stride-2 deconv (trainable scale, init_stdv 0.1) -> tanh. CIFAR: s = 4, c = 512, 256, 128 ->
32x32x3. Norm is batch statistics (official), virtual batch norm (the paper's CIFAR samples, via the
fixed reference batch in the `vbn_ref` collection, one extra forward pass) or none.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from itgan_jax.nn.batchnorm import BatchStatNorm
from itgan_jax.nn.minibatch import MinibatchDiscrimination
from itgan_jax.nn.noise import GaussianNoise
from itgan_jax.nn.vbn import VirtualBatchNorm, make_reference_batch
from itgan_jax.nn.weightnorm import WNConv, WNConvTranspose, WNDense

G_NORMS = ("batch", "vbn", "vbnl", "vbnlp", "none")


def lrelu(x):
  return jnp.maximum(x, 0.2 * x)


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
    h = nn.Dropout(self.hidden_dropout, deterministic=not train)(h)
    h = lrelu(WNConv(c2, kernel_size=(3, 3), padding=1)(h))
    h = lrelu(WNConv(c2, kernel_size=(3, 3), padding=1)(h))
    h = lrelu(WNConv(c2, kernel_size=(3, 3), strides=2, padding=1)(h))
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


class ConvGenerator(nn.Module):
  """Official CIFAR/SVHN G (deconvs of 5x5, stride 2); output (N, H, W, C) in [-1, 1]."""
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
    vbn = self.norm not in ("batch", "none")
    if vbn:  # the reference z, drawn once at init and stored (not trained)
      ref = self.variable("vbn_ref", "z", lambda: make_reference_batch(
          self.make_rng("vbn"), (self.num_ref, z.shape[-1]), self.ref_dist)).value
      z = jnp.concatenate([ref, z])
    s, c0 = self.start_size, self.channels[0]
    h = nn.Dense(s * s * c0, use_bias=not (self.norm == "batch"),
                 kernel_init=nn.initializers.normal(0.05))(z)
    h = nn.relu(self._norm(h.reshape((h.shape[0], s, s, c0))))
    for c in self.channels[1:]:
      h = nn.ConvTranspose(c, (5, 5), strides=(2, 2), padding="SAME",
                           use_bias=not (self.norm == "batch"),
                           kernel_init=nn.initializers.normal(0.05))(h)
      h = nn.relu(self._norm(h))
    out = jnp.tanh(WNConvTranspose(self.out_channels, kernel_size=(5, 5), strides=2, init_stdv=0.1,
                                   train_scale=True)(h))
    return out[self.num_ref:] if vbn else out
