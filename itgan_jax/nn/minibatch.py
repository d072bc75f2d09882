"""Minibatch discrimination (Salimans et al. 2016, Sec. 3.2; improved-gan nn.MinibatchLayer).

theta (A, B, C) ~ N(0, 0.05); W = theta * exp(log_weight_scale) / ||theta||_A (each (b, c) column
normalised over the A inputs); M = f W (N, B, C);
  abs_dif[i, b, j] = sum_c |M[i,b,c] - M[j,b,c]| + 1e6 [i == j]   (self excluded)
  o[i, b] = sum_j exp(-abs_dif[i, b, j]) + bias[b]                 (bias initialised to -1)
output concat(f, o) (A + B features). Data-dependent init (inside `model.init`): distances are
divided by 0.5 * mean_i min_j abs_dif per kernel (folded into log_weight_scale) and the bias is set
to -mean_i o so the features start centred. Statistics are within the batch passed in: the official
scripts call D separately on labeled, unlabeled and generated batches (pure real or pure fake).

`JointMinibatchFeatures` is the ImageNet variant (improved-gan imagenet/discriminator.py): a plain
linear map (W ~ N(0, 0.02), bias 0, no normalisation, no learned scale, no data-dependent init) to
B = 300 kernels of C = 50 dims on a joint batch x = concat(real half, fake half) of 2n rows;
  c[i, b, j] = exp(-sum_c |M[i,b,c] - M[j,b,c]|) (1 - [i == j])
  f_real[i, b] = sum_{j < n} c[i, b, j] / (n (2n - 1)),  f_fake[i, b] = sum_{j >= n} c[i, b, j] / (n (2n - 1))
output concat(f, f_real, f_fake). The divisor is the official one: the number of unmasked entries
of the whole (2n x n) half of the mask, a constant, not each row's count of other examples.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


@jax.custom_vjp
def pairwise_l1(m: jax.Array) -> jax.Array:
  """d[i, b, j] = sum_c |m[i,b,c] - m[j,b,c]| for m of shape (N, B, C) (self distance 0).

  The gradient is hand-written: dm[i,b,c] = sum_j (g[i,b,j] + g[j,b,i]) sign(m[i,b,c] - m[j,b,c])
  (sign(0) = 0 as Theano's gradient of abs; JAX's own picks +1 at a tie), reduced in a
  (B, C, N, N) layout. XLA's CPU autodiff of the
  broadcast form took ~0.45 s per call at N = B = 100, C = 5 (about 9x the hand-written one and
  7x a whole MNIST MLP D step), which made minibatch discrimination impractical on a CPU.
  """
  return jnp.sum(jnp.abs(m[:, :, :, None] - jnp.transpose(m, (1, 2, 0))[None]), axis=2)


def _pairwise_l1_fwd(m):
  return pairwise_l1(m), m


def _pairwise_l1_bwd(m, g):
  mt = jnp.transpose(m, (1, 2, 0))                                  # (B, C, N)
  sign = jnp.sign(mt[:, :, :, None] - mt[:, :, None, :])            # (B, C, N_i, N_j)
  g_sym = jnp.transpose(g + jnp.transpose(g, (2, 1, 0)), (1, 0, 2))  # (B, N_i, N_j)
  dm = jnp.sum(sign * g_sym[:, None], axis=3)                       # (B, C, N_i)
  return (jnp.transpose(dm, (2, 0, 1)),)


pairwise_l1.defvjp(_pairwise_l1_fwd, _pairwise_l1_bwd)


def l1_distances(m: jax.Array) -> jax.Array:
  """abs_dif[i, b, j] = sum_c |m[i,b,c] - m[j,b,c]| + 1e6 [i == j] for m of shape (N, B, C)."""
  return pairwise_l1(m) + 1e6 * jnp.eye(m.shape[0], dtype=m.dtype)[:, None, :]


class MinibatchDiscrimination(nn.Module):
  """The official minibatch layer with B = `num_kernels`, C = `dim_per_kernel` (CIFAR/SVHN 100 x 5)."""
  num_kernels: int = 100
  dim_per_kernel: int = 5
  theta_init_std: float = 0.05
  data_init: bool = True

  @nn.compact
  def __call__(self, f: jax.Array) -> jax.Array:
    f = f.reshape((f.shape[0], -1))
    b, c = self.num_kernels, self.dim_per_kernel
    theta = self.param("theta", nn.initializers.normal(self.theta_init_std),
                       (f.shape[-1], b, c))
    unit = theta / jnp.sqrt(jnp.sum(jnp.square(theta), axis=0))
    init_scale = init_bias = None
    if self.data_init and self.is_initializing():
      dist = l1_distances(jnp.einsum("na,abc->nbc", f, unit))
      half_mean_min = 0.5 * jnp.mean(jnp.min(dist, axis=2), axis=0)  # (B,)
      init_scale = jnp.broadcast_to(-jnp.log(half_mean_min)[:, None], (b, c))
      o = jnp.sum(jnp.exp(-dist / half_mean_min[None, :, None]), axis=2)
      init_bias = -jnp.mean(o, axis=0)
    log_scale = self.param(
        "log_weight_scale",
        (lambda *_: init_scale) if init_scale is not None else nn.initializers.zeros, (b, c))
    bias = self.param(
        "bias", (lambda *_: init_bias) if init_bias is not None else nn.initializers.constant(-1.0),
        (b,))
    m = jnp.einsum("na,abc->nbc", f, unit * jnp.exp(log_scale)[None])
    o = jnp.sum(jnp.exp(-l1_distances(m)), axis=2) + bias
    return jnp.concatenate([f, o], axis=1)


class JointMinibatchFeatures(nn.Module):
  """ImageNet minibatch features on a joint (real || fake) batch; see the module docstring.

  The input's first `x.shape[0] // 2` rows are the real half and the rest the fake half (official
  `joint = concat(images, G)`); each example gets kernel sums over both halves (2 B features).
  """
  num_kernels: int = 300
  dim_per_kernel: int = 50
  kernel_init_std: float = 0.02

  @nn.compact
  def __call__(self, f: jax.Array) -> jax.Array:
    f = f.reshape((f.shape[0], -1))
    rows = f.shape[0]
    if rows % 2 or rows < 2:
      raise ValueError(f"JointMinibatchFeatures needs a joint batch of real rows followed by as many "
                       f"fake rows (an even number); got {rows} rows")
    n, b, c = rows // 2, self.num_kernels, self.dim_per_kernel
    m = nn.Dense(b * c, kernel_init=nn.initializers.normal(self.kernel_init_std),
                 bias_init=nn.initializers.zeros)(f).reshape((rows, b, c))
    masked = jnp.exp(-pairwise_l1(m)) * (1.0 - jnp.eye(rows, dtype=m.dtype))[:, None, :]
    count = n * (2 * n - 1)  # official: sum of the (2n, 1, n) half of the mask
    f_real = jnp.sum(masked[:, :, :n], axis=2) / count
    f_fake = jnp.sum(masked[:, :, n:], axis=2) / count
    return jnp.concatenate([f, f_real, f_fake], axis=1)
