"""Official Adam, per-epoch learning-rate schedules and EMA evaluation parameters vs NumPy."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from itgan_jax.optim import adam, ema, schedules


# --- Adam -----------------------------------------------------------------------------------------
def _np_official_adam(p, grads, lr_of_step, b1=0.5, b2=0.999):
  """improved-gan nn.adam_updates: t from 1, p -= lr * m_hat / sqrt(v_hat + 1e-8)."""
  m = v = np.zeros_like(p)
  out = []
  for t, g in enumerate(grads, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    p = p - lr_of_step(t - 1) * (m / (1 - b1**t)) / np.sqrt(v / (1 - b2**t) + 1e-8)
    out.append(p)
  return out


def _np_standard_adam(p, grads, lr, b1, b2, eps):
  m = v = np.zeros_like(p)
  out = []
  for t, g in enumerate(grads, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    out.append(p)
  return out


def _grads(n_steps, size=5, seed=3):
  rng = np.random.RandomState(seed)
  # Magnitudes from 1e-6 to 1: where eps inside vs outside the sqrt differ a lot.
  return [rng.randn(size) * 10.0 ** rng.uniform(-6, 0, size) for _ in range(n_steps)]


def _run(tx, p0, grads):
  params = {"w": jnp.asarray(p0, jnp.float32)}
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(params["w"], np.float64))
  return out


def test_official_adam_matches_numpy_over_several_steps():
  p0, grads = np.random.RandomState(0).randn(5), _grads(8)
  ours = _run(adam.official_adam(0.003), p0, grads)
  ref = _np_official_adam(p0, grads, lambda _: 0.003)
  for o, r in zip(ours, ref):
    np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-7)
  # ...and it is not standard Adam (eps outside the sqrt) for small gradients.
  std = _np_standard_adam(p0, grads, 0.003, 0.5, 0.999, 1e-8)
  assert np.max(np.abs(std[-1] - ref[-1])) > 1e-3


def test_make_adam_both_eps_placements_and_direction_only():
  p0, grads = np.random.RandomState(1).randn(5), _grads(4, seed=4)
  ours = _run(adam.make_adam(1e-2, b1=0.9, b2=0.99, eps=1e-4, eps_inside_sqrt=False), p0, grads)
  for o, r in zip(ours, _np_standard_adam(p0, grads, 1e-2, 0.9, 0.99, 1e-4)):
    np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-7)
  ours = _run(adam.make_adam(0.003, eps_inside_sqrt=True), p0, grads)
  for o, r in zip(ours, _np_official_adam(p0, grads, lambda _: 0.003)):
    np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-7)
  # learning_rate=None: the positive direction, caller applies p - lr * u.
  tx = adam.make_adam(None)
  params = jnp.asarray(p0, jnp.float32)
  state = tx.init(params)
  u, _ = tx.update(jnp.asarray(grads[0], jnp.float32), state, params)
  g = grads[0]
  np.testing.assert_allclose(u, g / np.sqrt(g**2 + 1e-8), rtol=1e-5)  # t = 1: m_hat = g, v_hat = g^2
  with pytest.raises(ValueError, match="b1"):
    adam.make_adam(1e-3, b1=1.0)
  with pytest.raises(ValueError, match="epsilon"):
    adam.make_adam(1e-3, eps=-1.0)


def test_official_adam_with_a_per_epoch_schedule_under_jit():
  spe = 3
  sched = schedules.official_linear_decay(0.1, start_epoch=1, end_epoch=4, steps_per_epoch=spe)
  tx = adam.official_adam(sched)
  p0, grads = np.random.RandomState(2).randn(4), _grads(13, size=4, seed=5)
  params = jnp.asarray(p0, jnp.float32)
  state = tx.init(params)
  step = jax.jit(lambda g, s, p: tx.update(g, s, p))
  ref = _np_official_adam(p0, grads, lambda t: 0.1 * min(max((4 - t // spe) / 3, 0), 1))
  for g, r in zip(grads, ref):
    updates, state = step(jnp.asarray(g, jnp.float32), state, params)
    params = params + updates
    np.testing.assert_allclose(params, r, rtol=1e-5, atol=2e-6)  # float32 accumulation


# --- schedules ------------------------------------------------------------------------------------
def test_linear_decay_equals_the_official_cifar_and_svhn_rates_bit_for_bit():
  for base, start, end, a, d in ((3e-4, 800, 1200, 3.0, 400.0), (3e-4, 600, 900, 3.0, 300.0)):
    sched = schedules.make_schedule("linear_decay", base_lr=base, start_epoch=start,
                                    end_epoch=end)
    epochs = np.arange(end)
    # Official: np.cast[float32](lr * np.minimum(3. - epoch/400., 1.)), evaluated once per epoch.
    official = (base * np.minimum(a - epochs / d, 1.0)).astype(np.float32)
    ours = np.asarray(jax.jit(jax.vmap(sched))(jnp.asarray(epochs)))
    np.testing.assert_array_equal(ours, official)
    assert ours[start] == np.float32(base) and ours[start + 1] < ours[start]
  sched = schedules.linear_decay(3e-4, 800, 1200)
  assert float(sched(1200)) == 0.0 and float(sched(5000)) == 0.0 and float(sched(0)) == np.float32(3e-4)
  np.testing.assert_allclose(float(sched(1000)), 1.5e-4, rtol=1e-6)


def test_per_step_schedule_is_constant_within_an_epoch():
  spe = 500
  sched = schedules.official_linear_decay(3e-4, 800, 1200, steps_per_epoch=spe)
  steps = np.array([0, 499, 400_000, 400_499, 400_500, 401_000, 401_499, 599_999, 600_000])
  ours = np.asarray(jax.vmap(sched)(jnp.asarray(steps)))
  epochs = steps // spe
  ref = (3e-4 * np.clip(3.0 - epochs / 400.0, 0, 1)).astype(np.float32)
  np.testing.assert_array_equal(ours, ref)
  assert ours[3] == ours[2] == np.float32(3e-4) and ours[5] == ours[6] < ours[4]
  via_factory = schedules.make_schedule("official_linear_decay", base_lr=3e-4, start_epoch=800,
                                        end_epoch=1200, steps_per_epoch=spe)
  np.testing.assert_array_equal(jax.vmap(via_factory)(jnp.asarray(steps)), ours)


def test_constant_schedule_and_factory_errors():
  for sched in (schedules.constant(0.003), schedules.make_schedule("constant", base_lr=0.003),
                schedules.make_schedule("constant", base_lr=0.003, steps_per_epoch=600)):
    for t in (0, 599, 10**6):
      assert float(sched(t)) == np.float32(0.003)
  with pytest.raises(ValueError, match="cosine.*constant"):
    schedules.make_schedule("cosine", base_lr=1.0)
  with pytest.raises(ValueError, match="end_epoch"):
    schedules.make_schedule("linear_decay", base_lr=1.0, start_epoch=5)
  with pytest.raises(ValueError, match="start_epoch < end_epoch"):
    schedules.make_schedule("linear_decay", base_lr=1.0, start_epoch=5, end_epoch=5)
  with pytest.raises(ValueError, match="takes no arguments"):
    schedules.make_schedule("constant", base_lr=1.0, start_epoch=5)
  with pytest.raises(ValueError, match="steps_per_epoch"):
    schedules.official_linear_decay(1.0, 1, 2, steps_per_epoch=0)


# --- EMA ------------------------------------------------------------------------------------------
def _tree():
  return {"a": jnp.array([1.0, -2.0]), "b": {"c": jnp.full((2, 2), 0.5)}}


def test_ema_zero_init_update_matches_numpy():
  params = _tree()
  a = ema.ema_init(params)  # official: zeros, no bias correction
  chex.assert_trees_all_equal(a, jax.tree.map(jnp.zeros_like, params))
  rng = np.random.RandomState(6)
  ref = {"a": np.zeros(2), "c": np.zeros((2, 2))}
  for _ in range(5):
    params = jax.tree.map(lambda p: p + jnp.asarray(rng.randn(*p.shape), jnp.float32), params)
    a = ema.ema_update(a, params, 0.1)
    ref = {"a": ref["a"] + 0.1 * (np.asarray(params["a"]) - ref["a"]),
           "c": ref["c"] + 0.1 * (np.asarray(params["b"]["c"]) - ref["c"])}
    np.testing.assert_allclose(a["a"], ref["a"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a["b"]["c"], ref["c"], rtol=1e-6, atol=1e-7)
  # Default rate is the official 1e-4.
  one = ema.ema_update({"w": jnp.zeros(1)}, {"w": jnp.ones(1)})
  np.testing.assert_allclose(one["w"], [1e-4], rtol=1e-6)
  chex.assert_trees_all_equal(ema.ema_init(params, zero_init=False), params)


def test_ema_debiased_matches_numpy_and_recovers_constant_params():
  params = {"w": jnp.array([1.0, -2.0, 3e-3])}
  for rate, steps in ((0.1, 3), (1e-4, 1), (1e-4, 7)):
    a = ema.ema_init(params)
    for _ in range(steps):
      a = ema.ema_update(a, params, rate)
    ref = np.asarray(a["w"], np.float64) / (1 - (1 - rate) ** steps)  # float64 reference
    np.testing.assert_allclose(ema.ema_debiased(a, steps, rate)["w"], ref, rtol=2e-6)
    np.testing.assert_allclose(ema.ema_debiased(a, jnp.asarray(steps), rate)["w"], params["w"],
                               rtol=2e-4)
  with pytest.raises(ValueError, match="rate"):
    ema.ema_update(params, params, 1.5)
