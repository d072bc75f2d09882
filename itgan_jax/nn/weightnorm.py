"""Weight-normalised layers with data-dependent init (Salimans & Kingma 2016; improved-gan nn.py).

W = V * g / sqrt(eps + sum_in V^2) per output unit, y = x W + b (official `WeightNormLayer`,
`mnist_svhn_cifar10/nn.py`). With `data_init=True`, `model.init` measures the pre-activations
t = x V / sqrt(eps + sum V^2) of the batch the layer actually receives (g = 1, b = 0) and sets
g = init_stdv / s, b = -m * init_stdv / s with m, s the per-unit batch mean and biased std, and
returns (t - m) * init_stdv / s (= t g + b): the official `init=True` pass, so the next layer is
initialised on the statistics it will see. Outside init it is a plain reparametrised layer.

Variables: `params/kernel` (V), `params/bias` (b), and the scale g as `params/scale` when
`train_scale` (official `train_g=True` / `train_scale=True`, only the output layers) or else
`frozen/scale` (official hidden layers: g fixed once by the init pass, invisible to the optimiser).

The same class covers the three official variants:
  * `WeightNormLayer` (CIFAR/SVHN): defaults (V ~ N(0, 0.05), eps 1e-6);
  * older MNIST `nn.DenseLayer`: `kernel_init_std=0.1, eps=0.0` (theta / ||theta||, no epsilon),
    see `older_mnist_dense`;
  * `nn.l2normalize` on a Lasagne `DenseLayer` (MNIST G output): Glorot-uniform V, b = 0, trainable
    scale init 1, eps 1e-6, no data-dependent init, see `l2normalize_dense`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.nn import conv as conv_lib

Initializer = Callable[..., jax.Array]
PaddingLike = str | int | Sequence[tuple[int, int]]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
  if len(pair) != 2 or any(int(v) < 1 for v in pair):
    raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
  return int(pair[0]), int(pair[1])


class _WNBase(nn.Module):
  """Shared weight-norm mechanics; subclasses define the linear map and its reduction axes."""
  features: int
  init_stdv: float = 1.0
  train_scale: bool = False
  kernel_init_std: float = 0.05
  kernel_init: Initializer | None = None  # overrides N(0, kernel_init_std) when given
  eps: float = 1e-6
  use_bias: bool = True
  data_init: bool = True

  def _check_config(self) -> None:
    if self.features < 1:
      raise ValueError(f"{type(self).__name__}: features must be >= 1, got {self.features}")
    if self.eps < 0:
      raise ValueError(f"{type(self).__name__}: eps must be >= 0, got {self.eps}")
    if self.data_init and not self.init_stdv > 0:
      raise ValueError(f"{type(self).__name__}: init_stdv must be > 0, got {self.init_stdv}")

  def _kernel_init(self) -> Initializer:
    return self.kernel_init or nn.initializers.normal(self.kernel_init_std)

  def _normalise_and_scale(self, v: jax.Array, linear_map: Callable[[jax.Array], jax.Array],
                           norm_axes: tuple[int, ...], stat_axes: tuple[int, ...]) -> jax.Array:
    """x W + b, where `linear_map(w)` applies the layer's linear map with kernel w to its input."""
    v_norm = jnp.sqrt(self.eps + jnp.sum(jnp.square(v), axis=norm_axes))  # (features,)
    # Pre-activation with g = 1, b = 0: (x V) / ||V|| equals x (V / ||V||) (the norm is per output
    # unit, the last axis of the output), but scales activations instead of the kernel, so the
    # forward and backward passes never write a normalised copy of the kernel (a few percent of the
    # MNIST iteration on XLA:CPU, RESULTS.md speed section).
    t = linear_map(v) / v_norm
    init_g = init_b = None
    if self.data_init and self.is_initializing():
      count = int(np.prod([t.shape[a] for a in stat_axes]))
      if count < 2:
        raise ValueError(
            f"{type(self).__name__}: data-dependent init needs >= 2 values per unit to measure a "
            f"std, got input of shape {t.shape}; pass a larger init batch (the official code uses "
            "500 examples) or data_init=False")
      mean = jnp.mean(t, axis=stat_axes)
      inv_std = self.init_stdv / jnp.sqrt(jnp.mean(jnp.square(t - mean), axis=stat_axes))
      init_g, init_b = inv_std, -mean * inv_std
    ones = lambda *_: jnp.ones((self.features,), t.dtype)
    g_init = ones if init_g is None else (lambda *_: init_g)
    if self.train_scale:
      g = self.param("scale", g_init)
    else:
      g = self.variable("frozen", "scale", g_init).value
    y = t * g
    if self.use_bias:
      zeros = lambda *_: jnp.zeros((self.features,), t.dtype)
      y = y + self.param("bias", zeros if init_b is None else (lambda *_: init_b))
    return y


class WNDense(_WNBase):
  """Weight-normalised dense layer; the input is flattened to (N, -1) as in Lasagne.

  Official `WeightNormLayer` on a dense layer (defaults), the older MNIST `nn.DenseLayer`
  (`kernel_init_std=0.1, eps=0.0`) or `nn.l2normalize` (`data_init=False, train_scale=True,
  kernel_init=glorot_uniform()`). With `use_bias=False` the init pass sets only g (the mean is not
  removed), so the init output still equals the post-init apply output.
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    self._check_config()
    x = x.reshape((x.shape[0], -1))
    v = self.param("kernel", self._kernel_init(), (x.shape[-1], self.features))
    return self._normalise_and_scale(v, lambda w: x @ w, norm_axes=(0,), stat_axes=(0,))


class WNConv(_WNBase):
  """Weight-normalised NHWC cross-correlation (Lasagne `Conv2DDNNLayer`, flip_filters=False) with an
  HWIO kernel; norm over (kh, kw, in) per output channel; init statistics over (N, H, W).

  `padding`: 'SAME', 'VALID', an int p (Lasagne `pad=p`; official `pad=1` for 3x3 is 'half'), or
  explicit ((top, bottom), (left, right)).
  """
  kernel_size: int | Sequence[int] = (3, 3)
  strides: int | Sequence[int] = 1
  padding: PaddingLike = "SAME"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    self._check_config()
    if x.ndim != 4:
      raise ValueError(f"WNConv expects NHWC input (4 dims), got shape {x.shape}")
    kh, kw = _pair(self.kernel_size, "WNConv kernel_size")
    strides = _pair(self.strides, "WNConv strides")
    padding = self.padding
    if isinstance(padding, str):
      if padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"WNConv padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}")
      padding = padding.upper()
    elif isinstance(padding, (int, np.integer)):
      if padding < 0:
        raise ValueError(f"WNConv padding must be >= 0, got {padding}")
      padding = ((int(padding), int(padding)),) * 2
    else:
      padding = tuple(tuple(int(p) for p in pair) for pair in padding)
      if len(padding) != 2 or any(len(pair) != 2 for pair in padding):
        raise ValueError(f"WNConv explicit padding must be ((top, bottom), (left, right)), got "
                         f"{self.padding!r}")
    v = self.param("kernel", self._kernel_init(), (kh, kw, x.shape[-1], self.features))

    if isinstance(padding, str):
      padding = jax.lax.padtype_to_pads(x.shape[1:3], (kh, kw), strides, padding)
    padding = tuple(tuple(pair) for pair in padding)

    def conv(w):  # canonical forward and backward convolutions (nn/conv.py)
      return conv_lib.conv2d(x, w, strides, padding)
    return self._normalise_and_scale(v, conv, norm_axes=(0, 1, 2), stat_axes=(0, 1, 2))


class WNConvTranspose(_WNBase):
  """Weight-normalised transposed convolution (official `Deconv2DLayer`, border_mode 'half').

  The adjoint of a stride-s cross-correlation with padding k // 2, so the output is exactly
  s * input size (4x4 -> 8x8 for the official 5x5, stride 2); this needs odd kernel sizes (as
  Theano's 'half' mode with the official target shapes). Kernel (kh, kw, in, out); norm over
  (kh, kw, in) per output channel (official axes (0, 2, 3) of W shaped (in, out, kh, kw)); init
  statistics over (N, H, W). Theano's op is the adjoint of a true (flipped) convolution, so an
  official kernel corresponds to ours flipped in (kh, kw); this only matters for porting weights.
  """
  kernel_size: int | Sequence[int] = (5, 5)
  strides: int | Sequence[int] = 2

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    self._check_config()
    if x.ndim != 4:
      raise ValueError(f"WNConvTranspose expects NHWC input (4 dims), got shape {x.shape}")
    kh, kw = _pair(self.kernel_size, "WNConvTranspose kernel_size")
    sh, sw = _pair(self.strides, "WNConvTranspose strides")
    if kh % 2 == 0 or kw % 2 == 0:
      raise ValueError(f"WNConvTranspose needs odd kernel sizes for an output of exactly "
                       f"strides * input ('half' padding), got {(kh, kw)}")
    v = self.param("kernel", self._kernel_init(), (kh, kw, x.shape[-1], self.features))

    def deconv(w):  # H -> s * H for odd k (nn/conv.py)
      return conv_lib.conv_transpose2d(x, w, (sh, sw))
    return self._normalise_and_scale(v, deconv, norm_axes=(0, 1, 2), stat_axes=(0, 1, 2))


def older_mnist_dense(features: int, train_scale: bool = False, **kwargs) -> WNDense:
  """Official older MNIST `nn.DenseLayer`: theta ~ N(0, 0.1), W = theta * scale / ||theta|| (no
  epsilon), data-dependent init scale = 1/std, b = -mean/std; `train_scale` only for the output."""
  return WNDense(features, train_scale=train_scale, kernel_init_std=0.1, eps=0.0, **kwargs)


def l2normalize_dense(features: int, **kwargs) -> WNDense:
  """Official `nn.l2normalize(lasagne DenseLayer)`: Glorot-uniform V, b = 0, trainable scale init 1,
  W = V * scale / sqrt(1e-6 + sum V^2), no data-dependent init (MNIST G output layer)."""
  return WNDense(features, train_scale=True, data_init=False, eps=1e-6,
                 kernel_init=nn.initializers.glorot_uniform(), **kwargs)
