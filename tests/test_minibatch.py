"""Minibatch discrimination against a NumPy re-derivation of the official MinibatchLayer."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from itgan_jax.nn.minibatch import JointMinibatchFeatures, MinibatchDiscrimination, pairwise_l1


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


def test_pairwise_l1_gradient_matches_numpy_sign_formula_and_autodiff():
  """The hand-written VJP of d[i,b,j] = sum_c |m_ibc - m_jbc| against the NumPy derivation
  dm[i,b,c] = sum_j (g[i,b,j] + g[j,b,i]) sign(m_ibc - m_jbc) (ties included: Theano's sign(0) = 0)
  and, away from ties, JAX autodiff of the plain broadcast expression."""
  rng = np.random.RandomState(3)
  m = rng.randn(7, 4, 3).astype(np.float32)
  m[5] = m[2]  # a tie: sign(0) = 0
  g = rng.randn(7, 4, 7).astype(np.float32)
  sign = np.sign(m[:, :, :, None] - m.transpose(1, 2, 0)[None])            # (N, B, C, N)
  ref = np.einsum("ibj,ibcj->ibc", g + g.transpose(2, 1, 0), sign.astype(np.float64))
  _, vjp = jax.vjp(pairwise_l1, m)
  np.testing.assert_allclose(vjp(g)[0], ref, rtol=1e-5, atol=1e-5)
  plain = lambda x: jax.numpy.sum(jax.numpy.abs(x[:, :, :, None] - x.transpose(1, 2, 0)[None]), 2)
  m[5] += 0.5  # no ties: JAX's subgradient of |x| at 0 is +1, not Theano's 0
  _, vjp = jax.vjp(pairwise_l1, m)
  np.testing.assert_allclose(vjp(g)[0], jax.vjp(plain, m)[1](g)[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(pairwise_l1(m), plain(m), rtol=1e-6)


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


def test_data_dependent_init_equals_the_official_init_pass():
  """log_weight_scale = 0 - log(0.5 mean_i min_j d), bias = -mean_i sum_j exp(-d / that), re-derived
  from nn.MinibatchLayer.get_output_for(init=True) with theta as drawn."""
  rng = np.random.RandomState(2)
  f = (rng.randn(40, 12) * 2 + 1).astype(np.float32)
  layer = MinibatchDiscrimination(num_kernels=7, dim_per_kernel=4)
  variables = layer.init(jax.random.PRNGKey(3), f)
  p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
  theta = p["theta"]
  _, dist0 = _np_forward(f.astype(np.float64), theta, np.zeros((7, 4)), np.zeros(7))
  mmad = 0.5 * dist0.min(axis=2).mean(axis=0)                      # (B,)
  expected_log_scale = np.broadcast_to(-np.log(mmad)[:, None], (7, 4))
  expected_bias = -np.exp(-dist0 / mmad[None, :, None]).sum(2).mean(0)
  np.testing.assert_allclose(p["log_weight_scale"], expected_log_scale, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(p["bias"], expected_bias, rtol=1e-4, atol=1e-5)


def test_joint_imagenet_features_match_official_normalisation():
  rng = np.random.RandomState(4)
  n, kernels, dims = 5, 6, 4
  f = rng.randn(2 * n, 9).astype(np.float32)
  layer = JointMinibatchFeatures(num_kernels=kernels, dim_per_kernel=dims)
  variables = layer.init(jax.random.PRNGKey(0), f)
  dense = {k: np.asarray(v, np.float64) for k, v in variables["params"]["Dense_0"].items()}
  assert abs(dense["kernel"].std() - 0.02) < 0.01 and np.all(dense["bias"] == 0)
  out = np.asarray(layer.apply(variables, f), np.float64)
  chex.assert_shape(out, (2 * n, 9 + 2 * kernels))
  m = (f.astype(np.float64) @ dense["kernel"] + dense["bias"]).reshape(2 * n, kernels, dims)
  mask = 1.0 - np.eye(2 * n)
  denom_real = mask[:, :n].sum()  # official: tf.reduce_sum(half(mask, 0)) over the whole half
  denom_fake = mask[:, n:].sum()
  assert denom_real == denom_fake == n * (2 * n - 1)
  expected = np.zeros((2 * n, 2 * kernels))
  for i in range(2 * n):
    for b in range(kernels):
      for j in range(2 * n):
        if i == j:
          continue
        c = np.exp(-np.abs(m[i, b] - m[j, b]).sum())
        if j < n:
          expected[i, b] += c / denom_real
        else:
          expected[i, kernels + b] += c / denom_fake
  np.testing.assert_allclose(out[:, :9], f, rtol=1e-6)
  np.testing.assert_allclose(out[:, 9:], expected, rtol=1e-4, atol=1e-7)
  # Default sizes are the official 300 x 50.
  assert (JointMinibatchFeatures().num_kernels, JointMinibatchFeatures().dim_per_kernel) == (300, 50)
  with pytest.raises(ValueError, match="even number"):
    layer.apply(variables, f[:-1])


def test_statistics_span_the_global_batch_under_sharding():
  """jit with the batch sharded over 8 devices computes the same cross-example sums as one device."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  from itgan_jax.train import sharding
  rng = np.random.RandomState(5)
  f = rng.randn(16, 10).astype(np.float32)
  layer = MinibatchDiscrimination(num_kernels=4, dim_per_kernel=3)
  variables = layer.init(jax.random.PRNGKey(0), f)
  single = jax.jit(layer.apply)(variables, f)
  mesh = sharding.make_mesh(8)
  data = NamedSharding(mesh, P("data"))
  sharded = jax.jit(layer.apply, in_shardings=(sharding.replicated(mesh), data),
                    out_shardings=data)(variables, jax.device_put(f, data))
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)
