"""Layers (flax.linen)."""
from itgan_jax.nn.batchnorm import BatchStatNorm
from itgan_jax.nn.noise import GaussianNoise
from itgan_jax.nn.weightnorm import WNConv
from itgan_jax.nn.weightnorm import WNConvTranspose
from itgan_jax.nn.weightnorm import WNDense
from itgan_jax.nn.weightnorm import l2normalize_dense
from itgan_jax.nn.weightnorm import older_mnist_dense
