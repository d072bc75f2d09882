"""NumPy re-derivation of the ProGAN layers (papers.md B.2-B.3), in the official NCHW layout.

Written from the formulas of tkarras/progressive_growing_of_gans (Theano `network.py`, TF
`networks.py`), with explicit loops where our code reshapes (e.g. the strided minibatch-stddev
groups), so that it shares no code path with `itgan_jax.nn.progressive`. Float64 throughout.
"""

from __future__ import annotations

import numpy as np


def lrelu(x: np.ndarray) -> np.ndarray:
  return np.where(x > 0, x, 0.2 * x)


def he_scale(gain: float, fan_in: int) -> float:
  return gain / np.sqrt(fan_in)


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, gain: float, wscale: bool = True):
  """x (N, A), w (A, B): x (w * gain / sqrt(A)) + b, the bias unscaled."""
  c = he_scale(gain, w.shape[0]) if wscale else 1.0
  y = x @ (w * c)
  return y if b is None else y + b


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, gain: float, pad: int,
         wscale: bool = True) -> np.ndarray:
  """Cross-correlation of x (N, C, H, W) with w (kh, kw, C, O) (our HWIO storage), zero padding
  `pad` on each side, stride 1, weight times gain / sqrt(kh kw C), plus an unscaled bias."""
  kh, kw, cin, cout = w.shape
  c = he_scale(gain, kh * kw * cin) if wscale else 1.0
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  n, _, hp, wp = xp.shape
  ho, wo = hp - kh + 1, wp - kw + 1
  out = np.zeros((n, cout, ho, wo))
  for a in range(kh):
    for bb in range(kw):
      patch = xp[:, :, a:a + ho, bb:bb + wo]                 # (N, C, Ho, Wo)
      out += np.einsum("nchw,co->nohw", patch, w[a, bb] * c)
  if b is not None:
    out += b[None, :, None, None]
  return out


def pixel_norm(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
  """Theano PixelNormLayer: v / sqrt(mean(v^2, axis=1) + eps) (axis 1 = channels in NCHW)."""
  return x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + eps)


def minibatch_stddev(x: np.ndarray, group_size: int | None) -> np.ndarray:
  """Theano `MinibatchStatConcatLayer(Tstdeps, 'all')` for group_size None; TF
  `minibatch_stddev_layer` otherwise, where sample n belongs to group n mod (N / G)."""
  n = x.shape[0]
  g = n if group_size is None else min(group_size, n)
  m = n // g
  stat = np.zeros(n)
  for j in range(m):
    members = [i for i in range(n) if i % m == j]
    y = x[members]
    std = np.sqrt(np.mean((y - y.mean(axis=0)) ** 2, axis=0) + 1e-8)
    stat[members] = std.mean()
  tiled = np.broadcast_to(stat[:, None, None, None], (n, 1) + x.shape[2:])
  return np.concatenate([x, tiled], axis=1)


def upsample(x: np.ndarray) -> np.ndarray:
  """Nearest neighbour x2: out[..., i, j] = x[..., i // 2, j // 2]."""
  n, c, h, w = x.shape
  out = np.zeros((n, c, 2 * h, 2 * w))
  for i in range(2 * h):
    for j in range(2 * w):
      out[:, :, i, j] = x[:, :, i // 2, j // 2]
  return out


def downsample(x: np.ndarray) -> np.ndarray:
  """2x2 average pooling, stride 2."""
  return 0.25 * (x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2]
                 + x[:, :, 1::2, 1::2])


def layer_norm(x: np.ndarray, gain: float, b: np.ndarray, eps: float = 1e-4) -> np.ndarray:
  """Theano LayerNormLayer: per sample over (C, H, W), scalar gain, per-channel bias."""
  axes = tuple(range(1, x.ndim))
  v = x - x.mean(axis=axes, keepdims=True)
  v = v / np.sqrt(np.mean(v ** 2, axis=axes, keepdims=True) + eps)
  return v * gain + b.reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-4):
  """lasagne BatchNormLayer with batch statistics: axes (0, 2, 3), biased variance."""
  mean = x.mean(axis=(0, 2, 3), keepdims=True)
  var = x.var(axis=(0, 2, 3), keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma[None, :, None, None] + beta[None, :, None, None]


def nchw(x) -> np.ndarray:
  return np.transpose(np.asarray(x, np.float64), (0, 3, 1, 2))


def nhwc(x) -> np.ndarray:
  return np.transpose(x, (0, 2, 3, 1))
