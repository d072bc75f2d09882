"""SemiSupervisedGAN step semantics that the official Theano code fixes."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax import experiment
from tests.helpers import load_config


@pytest.fixture(scope="module")
def setup(shared_data_dir):
  """A tiny experiment, its initial state, one batch and the state after one jitted step."""
  config = load_config("mnist_ssl", "tiny", **{"data.dir": str(shared_data_dir)})
  exp = experiment.build(config)
  # Jitted, as the loop runs it (eagerly the noise layers' unrolled threefry runs op by op).
  state = jax.jit(exp.variant.init)(jax.random.PRNGKey(0), exp.init_batch)
  arrays = exp.feeder.put(None)
  batch = exp.feeder.gather(arrays, {k: v[0] for k, v in exp.epoch_plan(0).items()})
  new_state, metrics = jax.jit(exp.variant.train_step)(state, batch, jax.random.PRNGKey(1))
  return exp, state, batch, new_state, metrics


def test_ema_uses_pre_step_params_and_debiased_option(setup):
  exp, state, batch, new_state, _ = setup
  before = state.d.params
  rate = exp.variant.ema_rate
  # Theano applies a <- a + rate (p - a) with the parameters from before the step's update.
  for a, p in zip(jax.tree.leaves(new_state.d.ema), jax.tree.leaves(before)):
    np.testing.assert_allclose(a, rate * np.asarray(p), rtol=1e-6, atol=1e-12)
  x = batch["x_unl"]
  official = exp.variant.classify(new_state, x, use_ema=True)
  debiased_variant = dataclasses.replace(exp.variant, ema_debias=True)
  debiased = debiased_variant.classify(new_state, x, use_ema=True)
  # After one update the debiased EMA equals the pre-step parameters exactly.
  expected, _ = exp.variant.discriminator.apply({"params": before, **state.d.constants}, x,
                                                train=False)
  np.testing.assert_allclose(debiased, expected, rtol=1e-4, atol=1e-4)
  assert not np.allclose(official, expected, atol=1e-3)


def test_generator_update_sees_discriminator_after_its_update(setup):
  """train_batch_gen runs after train_batch_disc: G's loss uses D's new parameters."""
  exp, state, batch, new_state, metrics = setup
  # Recompute the G loss with the updated D and the same randomness: equal to the reported one.
  _, k_g = jax.random.split(jax.random.PRNGKey(1))
  generator_update = jax.jit(exp.variant.generator_update)
  _, loss_new = generator_update(state.g, new_state.d, batch, jax.random.fold_in(k_g, 0),
                                 jnp.float32(0.003))
  _, loss_old = generator_update(state.g, state.d, batch, jax.random.fold_in(k_g, 0),
                                 jnp.float32(0.003))
  np.testing.assert_allclose(metrics["loss_gen"], loss_new, rtol=1e-5)
  assert not np.isclose(float(loss_old), float(loss_new), rtol=1e-4)


@pytest.mark.parametrize("overrides", [
    {"loss.generator": "minimax", "train.g_steps_per_d_step": 3},
    {"loss.generator": "non_saturating", "loss.label_smoothing": 0.9},
    {"loss.generator": "kl_target", "optim.historical_averaging_d": 1e-3,
     "optim.historical_averaging_g": 1e-3},
])
def test_technique_switches_trace_from_config(shared_data_dir, overrides):
  """Each switch is reachable from the config without code edits (traced, not compiled)."""
  config = load_config("mnist_ssl", "tiny", **{"data.dir": str(shared_data_dir), **overrides})
  exp = experiment.build(config)
  x_init = exp.init_batch
  state = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), x_init)
  batch = exp.feeder.gather(exp.feeder.put(None), {k: v[0] for k, v in exp.epoch_plan(0).items()})
  new_state, metrics = jax.eval_shape(exp.variant.train_step, state, batch, jax.random.PRNGKey(1))
  assert set(metrics) >= {"loss_lab", "loss_unl", "loss_gen"}
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


@pytest.mark.parametrize("g_norm", ["batch", "vbn"])
def test_mnist_minibatch_discrimination_config_traces(shared_data_dir, g_norm):
  """configs/mnist_md.py (conv D with minibatch features, 3 minimax G steps) builds and traces."""
  config = load_config("mnist_md", "tiny", **{"data.dir": str(shared_data_dir),
                                              "model.g_norm": g_norm})
  exp = experiment.build(config)
  assert not exp.variant.discriminator.batch_independent  # MD: statistics per pure batch
  x_init = exp.init_batch
  state = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), x_init)
  if g_norm == "vbn":
    assert "vbn_ref" in state.g.constants
  batch = exp.feeder.gather(exp.feeder.put(None), {k: v[0] for k, v in exp.epoch_plan(0).items()})
  _, metrics = jax.eval_shape(exp.variant.train_step, state, batch, jax.random.PRNGKey(1))
  assert metrics["loss_gen"].shape == ()
  samples = jax.eval_shape(exp.variant.generate, state, jnp.zeros((4, 100)))
  assert samples.shape == (4, 28, 28, 1)
