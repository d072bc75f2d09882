"""Minibatch discrimination against a NumPy re-derivation of the official MinibatchLayer."""

from __future__ import annotations

import chex
import jax
import numpy as np

from itgan_jax.nn.minibatch import MinibatchDiscrimination


def _np_forward(f, theta, log_scale, bias):
  w = theta * (np.exp(log_scale) / np.sqrt(np.sum(theta**2, axis=0)))[None]
  m = np.tensordot(f, w, axes=([1], [0]))  # (N, B, C)
  n = f.shape[0]
  dist = np.abs(m[:, :, :, None] - m.transpose(1, 2, 0)[None]).sum(2) + 1e6 * np.eye(n)[:, None, :]
  o = np.exp(-dist).sum(2) + bias
  return np.concatenate([f, o], 1), dist


def test_forward_matches_numpy_with_self_excluded():
  rng = np.random.RandomState(0)
  f = rng.randn(12, 16).astype(np.float32)
  layer = MinibatchDiscrimination(num_kernels=6, dim_per_kernel=3, data_init=False)
  variables = layer.init(jax.random.PRNGKey(0), f)
  p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
  np.testing.assert_array_equal(p["bias"], -1.0)
  np.testing.assert_array_equal(p["log_weight_scale"], 0.0)
  out = layer.apply(variables, f)
  ref, _ = _np_forward(f.astype(np.float64), p["theta"], p["log_weight_scale"], p["bias"])
  chex.assert_shape(out, (12, 16 + 6))
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
  # Identical examples: each sees the other at distance 0 (exp(0) = 1), never itself.
  twin = np.concatenate([f[:1], f[:1]])
  o = np.asarray(layer.apply(variables, twin))[:, 16:]
  np.testing.assert_allclose(o, 1.0 - 1.0, atol=1e-6)


def test_data_dependent_init_centres_features_and_normalises_distances():
  rng = np.random.RandomState(1)
  f = rng.randn(64, 20).astype(np.float32) * 3
  layer = MinibatchDiscrimination(num_kernels=8, dim_per_kernel=5)
  init_out, variables = layer.init_with_output(jax.random.PRNGKey(0), f)
  p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
  out, dist = _np_forward(f.astype(np.float64), p["theta"], p["log_weight_scale"], p["bias"])
  np.testing.assert_allclose(out[:, 20:].mean(0), 0.0, atol=1e-5)   # bias = -mean(o)
  np.testing.assert_allclose(dist.min(2).mean(0), 2.0, rtol=1e-4)   # 0.5 * mean min -> 1
  np.testing.assert_allclose(init_out, out, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(layer.apply(variables, f), out, rtol=1e-4, atol=1e-5)
