"""The permutation-invariant MNIST networks of `train_mnist_feature_matching.py` (papers.md A.3)."""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax

from itgan_jax.nn.batchnorm import BatchStatNorm
from itgan_jax.nn.minibatch import MinibatchDiscrimination
from itgan_jax.nn.noise import GaussianNoise
from itgan_jax.nn.weightnorm import WNDense


class MnistDiscriminator(nn.Module):
  """D: N(0, 0.3^2) input noise, weight-normalised dense 1000-500-250-250-250 (ReLU) each followed
  by N(0, 0.5^2) noise, then a 10-way weight-normalised output with trainable scale.

  The hidden layers are the official older `nn.DenseLayer`: theta ~ N(0, 0.1), W = theta * s /
  ||theta|| (no epsilon), scale s frozen after data-dependent init (`train_scale=False`).
  Returns (logits, features) where features are the post-ReLU hidden activations before the next
  noise layer; official feature matching reads `layers[-3]`, the third 250-unit layer = features[-1].

  `minibatch_kernels` > 0 inserts the official `MinibatchLayer` (B kernels x C dims) after the
  last hidden layer, as the official CIFAR/SVHN MD scripts put it after their last hidden features
  (before the K-way dense). It reads the noise-free features, before that layer's N(0, 0.5^2)
  noise (which then perturbs the concatenation): after the noise, the L1 distances between
  examples would be dominated by D's own noise and could not tell a collapsed batch from a varied
  one (the CIFAR D pools its features over space first, which averages its dropout out). Not in
  the official MNIST script: our CPU-sized MNIST MD model (configs/mnist_md_mlp.py).
  """
  hidden: Sequence[int] = (1000, 500, 250, 250, 250)
  num_classes: int = 10
  input_noise: float = 0.3
  hidden_noise: float = 0.5
  minibatch_kernels: int = 0
  minibatch_dim: int = 5

  @property
  def batch_independent(self) -> bool:
    """No batch statistics (the variant may stack batches into one call) unless minibatch features."""
    return self.minibatch_kernels == 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True):
    h = x.reshape((x.shape[0], -1))
    h = GaussianNoise(self.input_noise)(h, train=train)
    features = []
    for i, width in enumerate(self.hidden):
      h = nn.relu(WNDense(width, kernel_init_std=0.1, eps=0.0, train_scale=False)(h))
      features.append(h)
      if self.minibatch_kernels and i == len(self.hidden) - 1:
        h = MinibatchDiscrimination(self.minibatch_kernels, self.minibatch_dim)(h)
      h = GaussianNoise(self.hidden_noise)(h, train=train)
    logits = WNDense(self.num_classes, kernel_init_std=0.1, eps=0.0, train_scale=True)(h)
    return logits, tuple(features)


class MnistGenerator(nn.Module):
  """G: z (100) -> dense 500 -> BN -> softplus -> dense 500 -> BN -> softplus -> dense 784 -> sigmoid.

  Hidden dense layers are Lasagne defaults (Glorot-uniform W) whose bias is replaced by the batch
  norm's learned bias; BN has no scale (`g=None`) and always uses batch statistics (eps 1e-6). The
  output layer is `nn.l2normalize`: W = V * s / sqrt(1e-6 + sum V^2) with trainable s (init 1), no
  data-dependent init.
  """
  hidden: Sequence[int] = (500, 500)
  image_shape: tuple[int, int, int] = (28, 28, 1)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True):
    del train  # the official G always uses batch statistics and has no noise.
    h = z
    for width in self.hidden:
      h = nn.Dense(width, use_bias=False, kernel_init=nn.initializers.glorot_uniform())(h)
      h = nn.softplus(BatchStatNorm(use_scale=False, eps=1e-6)(h))
    out = WNDense(math.prod(self.image_shape), data_init=False, train_scale=True,
                  kernel_init=nn.initializers.glorot_uniform(), eps=1e-6)(h)
    return nn.sigmoid(out).reshape((z.shape[0],) + tuple(self.image_shape))
