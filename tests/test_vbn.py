"""Virtual batch norm: NumPy mixing reference, BN on the reference rows, independence, gradients,
data-parallel sharding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from itgan_jax.nn.vbn import VirtualBatchNorm, make_reference_batch
from itgan_jax.train import sharding

R = 6


def _np_vbn(x, r, gamma, beta, eps=1e-5, per_pixel=False):
  ref, live = x[:r], x[r:]
  ax = (0,) if per_pixel else (0, 1, 2)
  mu_ref, s_ref = ref.mean(ax, keepdims=True), (ref**2).mean(ax, keepdims=True)
  if per_pixel:
    mu_i, s_i = live, live**2
  else:
    mu_i, s_i = live.mean((1, 2), keepdims=True), (live**2).mean((1, 2), keepdims=True)
  mu = mu_i / (r + 1) + r / (r + 1) * mu_ref
  s = s_i / (r + 1) + r / (r + 1) * s_ref
  out = np.concatenate([(ref - mu_ref) / np.sqrt(eps + s_ref - mu_ref**2),
                        (live - mu) / np.sqrt(eps + s - mu**2)])
  return out * gamma + beta


@pytest.mark.parametrize("variant", ["vbn", "vbnl", "vbnlp"])
def test_matches_numpy_and_reference_rows_get_batch_norm(variant):
  x = np.random.RandomState(0).randn(R + 4, 5, 5, 3).astype(np.float64) * 2 + 0.5
  layer = VirtualBatchNorm(num_ref=R, variant=variant)
  variables = layer.init(jax.random.PRNGKey(0), x.astype(np.float32))
  p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
  gamma = p["gamma"] if variant == "vbn" else np.exp(p["log_gamma"])
  assert abs(gamma.mean() - 1) < 0.05 and 0 < gamma.std() < 0.05
  out = np.asarray(layer.apply(variables, x.astype(np.float32)), np.float64)
  ref = _np_vbn(x, R, gamma, p["beta"], per_pixel=variant == "vbnlp")
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
  if variant != "vbnlp":  # reference rows: plain batch norm (biased variance, eps 1e-5)
    r = x[:R]
    bn = (r - r.mean((0, 1, 2))) / np.sqrt(r.var((0, 1, 2)) + 1e-5) * gamma + p["beta"]
    np.testing.assert_allclose(out[:R], bn, rtol=1e-4, atol=1e-4)


def test_live_example_does_not_depend_on_other_live_examples():
  rng = np.random.RandomState(1)
  x = rng.randn(R + 5, 4, 4, 2).astype(np.float32)
  layer = VirtualBatchNorm(num_ref=R)
  variables = layer.init(jax.random.PRNGKey(0), x)
  out = layer.apply(variables, x)
  x2 = x.copy()
  x2[R + 3] += 10 * rng.randn(4, 4, 2)
  out2 = layer.apply(variables, x2)
  np.testing.assert_allclose(np.delete(np.asarray(out2), R + 3, 0),
                             np.delete(np.asarray(out), R + 3, 0), rtol=1e-6, atol=1e-6)
  # The paper-era statistics do couple live examples (the bug the official code later fixed).
  era = VirtualBatchNorm(num_ref=R, live_stats="paper_era_batch")
  diff = np.abs(np.asarray(era.apply(variables, x2)) - np.asarray(era.apply(variables, x)))
  assert diff[R].max() > 1e-3


def test_gradient_flows_through_reference_statistics():
  rng = np.random.RandomState(2)
  x = jnp.asarray(rng.randn(R + 3, 3, 3, 2), jnp.float32)
  layer = VirtualBatchNorm(num_ref=R)
  variables = layer.init(jax.random.PRNGKey(0), x)
  w = jnp.asarray(rng.randn(3, 3, 3, 2), jnp.float32)
  loss = lambda x: jnp.sum(layer.apply(variables, x)[R:] * w)  # live outputs only
  g = np.asarray(jax.grad(loss)(x))
  assert np.abs(g[:R]).max() > 1e-3  # reaches the reference rows: stats are not stopped
  # Central finite differences in float64 NumPy on one reference entry.
  gamma = np.asarray(variables["params"]["gamma"], np.float64)
  beta = np.asarray(variables["params"]["beta"], np.float64)
  xn = np.asarray(x, np.float64)
  h = 1e-4
  xp, xm = xn.copy(), xn.copy()
  xp[0, 1, 1, 0] += h
  xm[0, 1, 1, 0] -= h
  f = lambda a: np.sum(_np_vbn(a, R, gamma, beta)[R:] * np.asarray(w, np.float64))
  np.testing.assert_allclose(g[0, 1, 1, 0], (f(xp) - f(xm)) / (2 * h), rtol=2e-3, atol=1e-4)


def test_sharded_live_batch_equals_single_device():
  rng = np.random.RandomState(3)
  ref = jnp.asarray(rng.randn(R, 4, 4, 3), jnp.float32)
  live = jnp.asarray(rng.randn(16, 4, 4, 3), jnp.float32)
  layer = VirtualBatchNorm(num_ref=R)
  variables = layer.init(jax.random.PRNGKey(0), jnp.concatenate([ref, live]))
  f = lambda v, r, l: layer.apply(v, jnp.concatenate([r, l]))[R:]
  single = jax.jit(f)(variables, ref, live)
  mesh = sharding.make_mesh(8)
  repl, data = sharding.replicated(mesh), NamedSharding(mesh, P("data"))
  sharded = jax.jit(f, in_shardings=(repl, repl, data), out_shardings=data)(
      variables, jax.device_put(ref, repl), jax.device_put(live, data))
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-5)


def test_reference_batch_and_errors():
  z = make_reference_batch(jax.random.PRNGKey(0), (64, 10))
  assert z.shape == (64, 10) and float(z.min()) >= -1 and float(z.max()) <= 1
  with pytest.raises(ValueError, match="reference rows"):
    VirtualBatchNorm(num_ref=8).init(jax.random.PRNGKey(0), jnp.ones((8, 2, 2, 1)))
  with pytest.raises(ValueError, match="VBN variant"):
    VirtualBatchNorm(num_ref=2, variant="bn").init(jax.random.PRNGKey(0), jnp.ones((4, 2, 2, 1)))
