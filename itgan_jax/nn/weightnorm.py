"""Weight-normalised layers with data-dependent init (Salimans & Kingma 2016; improved-gan nn.py).

W = V * g / sqrt(eps + sum_in V^2) per output unit, y = x W + b. With `data_init=True`, `model.init`
measures the pre-activations t = x V/||V|| of the init batch and sets g = init_stdv / std(t),
b = -mean(t) * init_stdv / std(t), returning the normalised t (official `init=True` pass), so the
next layer is initialised on the statistics it will see. `train_scale=False` puts g in the `frozen`
collection (official hidden layers: g fixed after init, only V and b train).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


class _WNBase(nn.Module):
  """Shared weight-norm mechanics; subclasses define the linear map and its reduction axes."""
  features: int
  init_stdv: float = 1.0
  train_scale: bool = False
  kernel_init_std: float = 0.05
  kernel_init: Initializer | None = None
  eps: float = 1e-6
  use_bias: bool = True
  data_init: bool = True

  def _kernel_init(self):
    return self.kernel_init or nn.initializers.normal(self.kernel_init_std)

  def _normalise_and_scale(self, v: jax.Array, t_of_kernel, norm_axes, stat_axes):
    """Returns (x W + b) given `t_of_kernel(kernel)` computing the linear map of the input."""
    v_norm = jnp.sqrt(self.eps + jnp.sum(jnp.square(v), axis=norm_axes))  # (features,)
    t = t_of_kernel(v / v_norm)  # pre-activation with unit-norm columns, g = 1, b = 0
    init_g = init_b = None
    if self.data_init and self.is_initializing():
      mean = jnp.mean(t, axis=stat_axes)
      inv_std = self.init_stdv / jnp.sqrt(jnp.mean(jnp.square(t - mean), axis=stat_axes))
      init_g, init_b = inv_std, -mean * inv_std
    collection = "params" if self.train_scale else "frozen"
    g_init = (lambda *_: init_g) if init_g is not None else (lambda *_: jnp.ones((self.features,)))
    if collection == "params":
      g = self.param("scale", g_init)
    else:
      g = self.variable("frozen", "scale", g_init).value
    y = t * g
    if self.use_bias:
      b_init = (lambda *_: init_b) if init_b is not None else (lambda *_: jnp.zeros((self.features,)))
      y = y + self.param("bias", b_init)
    return y


class WNDense(_WNBase):
  """Weight-normalised dense layer (official `WeightNormLayer` on dense, or MNIST `nn.DenseLayer`
  with `kernel_init_std=0.1, eps=0.0`, or `nn.l2normalize` with `data_init=False, train_scale=True`).
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape((x.shape[0], -1))
    v = self.param("kernel", self._kernel_init(), (x.shape[-1], self.features))
    return self._normalise_and_scale(v, lambda w: x @ w, norm_axes=0, stat_axes=0)


class WNConv(_WNBase):
  """Weight-normalised NHWC convolution; norm over (kh, kw, in) per output channel; init statistics
  over (N, H, W)."""
  kernel_size: Sequence[int] = (3, 3)
  strides: int | Sequence[int] = 1
  padding: str | int = "SAME"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    v = self.param("kernel", self._kernel_init(), (kh, kw, x.shape[-1], self.features))
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    padding = ((self.padding, self.padding),) * 2 if isinstance(self.padding, int) else self.padding

    def conv(w):
      return jax.lax.conv_general_dilated(x, w, strides, padding,
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return self._normalise_and_scale(v, conv, norm_axes=(0, 1, 2), stat_axes=(0, 1, 2))


class WNConvTranspose(_WNBase):
  """Weight-normalised transposed convolution (official `Deconv2DLayer`, border_mode 'half'):
  output spatial size = strides * input size; norm over (kh, kw, in) per output channel."""
  kernel_size: Sequence[int] = (5, 5)
  strides: int = 2

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    v = self.param("kernel", self._kernel_init(), (kh, kw, x.shape[-1], self.features))
    s = self.strides
    # 'half' padding of the forward conv (k // 2) seen from the transposed side: the gradient of a
    # stride-s conv with padding p maps H -> s*H when padded by (k - 1 - p, k - 1 - p + s - 1).
    pads = tuple((k - 1 - k // 2, k - 1 - k // 2 + s - 1) for k in (kh, kw))

    def deconv(w):
      return jax.lax.conv_general_dilated(x, jnp.flip(w, (0, 1)), (1, 1), pads,
                                          lhs_dilation=(s, s),
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return self._normalise_and_scale(v, deconv, norm_axes=(0, 1, 2), stat_axes=(0, 1, 2))
