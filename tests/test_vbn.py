"""Virtual batch norm: NumPy mixing reference, BN on the reference rows, independence, gradients,
data-parallel sharding."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from itgan_jax.nn.vbn import VirtualBatchNorm, make_reference_batch, with_reference
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


def _jnp_vbn(h, r, gamma, beta, stop_reference_gradient, eps=1e-5):
  """An explicit jnp re-derivation of the official VBN (channels last, spatial stats)."""
  ref, live = h[:r], h[r:]
  mu_ref, s_ref = ref.mean((0, 1, 2)), (ref**2).mean((0, 1, 2))
  if stop_reference_gradient:
    mu_ref, s_ref = jax.lax.stop_gradient(mu_ref), jax.lax.stop_gradient(s_ref)
  mu = live.mean((1, 2), keepdims=True) / (r + 1) + r / (r + 1) * mu_ref
  s = (live**2).mean((1, 2), keepdims=True) / (r + 1) + r / (r + 1) * s_ref
  return (live - mu) / jnp.sqrt(eps + s - mu**2) * gamma + beta


def test_weight_gradient_includes_the_reference_path():
  """As in a generator: one weight feeds both the reference and the live rows. Our gradient equals
  the explicit derivation with gradients through mu_ref, s_ref and differs from the stopped one."""
  rng = np.random.RandomState(4)
  x = jnp.asarray(rng.randn(R + 4, 3, 3, 2), jnp.float32)
  w0 = jnp.asarray(rng.randn(2, 3), jnp.float32)
  t = jnp.asarray(rng.randn(4, 3, 3, 3), jnp.float32)
  layer = VirtualBatchNorm(num_ref=R)
  variables = layer.init(jax.random.PRNGKey(0), x @ w0)
  gamma, beta = variables["params"]["gamma"], variables["params"]["beta"]
  ours = jax.grad(lambda w: jnp.sum(layer.apply(variables, x @ w)[R:] * t))(w0)
  full = jax.grad(lambda w: jnp.sum(_jnp_vbn(x @ w, R, gamma, beta, False) * t))(w0)
  stopped = jax.grad(lambda w: jnp.sum(_jnp_vbn(x @ w, R, gamma, beta, True) * t))(w0)
  np.testing.assert_allclose(ours, full, rtol=1e-4, atol=1e-5)
  assert np.abs(np.asarray(ours) - np.asarray(stopped)).max() > 1e-2


class _TinyG(nn.Module):
  """dense -> VBN -> relu -> dense, with the fixed reference z prepended (the library pattern)."""
  num_ref: int = R

  @nn.compact
  def __call__(self, z):
    h = with_reference(self, z, self.num_ref)
    h = nn.Dense(8)(h)
    h = nn.relu(VirtualBatchNorm(num_ref=self.num_ref)(h))
    return nn.Dense(3)(h)[self.num_ref:]


def test_generator_pattern_keeps_a_fixed_reference_batch_outside_params():
  g = _TinyG()
  z = jax.random.uniform(jax.random.PRNGKey(1), (5, 4), minval=-1.0, maxval=1.0)
  variables = g.init({"params": jax.random.PRNGKey(0), "vbn": jax.random.PRNGKey(2)}, z)
  assert set(variables) == {"params", "vbn_ref"}
  ref = np.asarray(variables["vbn_ref"]["z"])
  assert ref.shape == (R, 4) and ref.min() >= -1 and ref.max() <= 1
  out = g.apply(variables, z)
  assert out.shape == (5, 3)
  # Each live example's output is a function of itself (and the fixed reference) only.
  alone = jnp.concatenate([g.apply(variables, z[i:i + 1]) for i in range(5)])
  np.testing.assert_allclose(out, alone, rtol=1e-5, atol=1e-6)
  # Applying never redraws the reference (no `vbn` rng needed after init).
  np.testing.assert_array_equal(g.apply(variables, z), out)
  # Equals an explicit computation on concat(ref, z).
  p = variables["params"]
  h = jnp.concatenate([jnp.asarray(ref), z]) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  mu_ref, s_ref = h[:R].mean(0), (h[:R] ** 2).mean(0)
  live = h[R:]
  mu, s = live / (R + 1) + R / (R + 1) * mu_ref, live**2 / (R + 1) + R / (R + 1) * s_ref
  v = p["VirtualBatchNorm_0"]
  hn = jax.nn.relu((live - mu) / jnp.sqrt(1e-5 + s - mu**2) * v["gamma"] + v["beta"])
  np.testing.assert_allclose(out, hn @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], rtol=1e-4,
                             atol=1e-5)


@pytest.mark.parametrize("variant", ["vbn", "vbnl", "vbnlp"])
def test_a_vector_input_has_one_gamma_and_any_row_count(variant):
  """Official: a 1-D input is reshaped to (N, 1, 1, 1), so one gamma/beta, any batch size."""
  layer = VirtualBatchNorm(num_ref=4, variant=variant)
  x10 = jax.random.normal(jax.random.PRNGKey(0), (10,))
  variables = layer.init(jax.random.PRNGKey(1), x10)
  assert all(v.shape == (1,) for v in jax.tree.leaves(variables["params"]))
  x12 = jax.random.normal(jax.random.PRNGKey(2), (12,))
  out = layer.apply(variables, x12)
  assert out.shape == (12,)
  np.testing.assert_array_equal(out, layer.apply(variables, x12[:, None])[:, 0])
