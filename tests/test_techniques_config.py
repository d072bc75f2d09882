"""Every Improved-GAN technique switch is reachable from a config key; invalid combinations fail at
build time with a clear message; a tiny minibatch-discrimination config runs one chunk.

The experiment is built on a small synthetic MNIST-shaped dataset (no files needed) so each build
takes well under a second.
"""

from __future__ import annotations

import functools
import json

import jax
import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.optim import factory
from itgan_jax.optim.historical_averaging import HistoricalAveragingState
from tests.helpers import fake_dataset, load_config, serve_datasets


def _fake_mnist(n_train=1000, n_test=200):
  return fake_dataset("mnist", (28, 28, 1), n_train, n_test)


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
  data = _fake_mnist()
  serve_datasets(monkeypatch, data)


def _build(name="mnist_md", **overrides):
  defaults = {"data.num_labeled": 100} if name.startswith("mnist_md") else {}
  return experiment.build(load_config(name, "tiny", **{**defaults, **overrides}))


def _ha_states(opt_state):
  return [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(
      x, HistoricalAveragingState)) if isinstance(s, HistoricalAveragingState)]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("g_norm", ["batch", "vbn", "vbnl", "vbnlp", "none"])
def test_generator_norm_switch(g_norm):
  exp = _build(**{"model.g_norm": g_norm})
  g = exp.variant.generator
  assert g.norm == g_norm
  z = jax.ShapeDtypeStruct((4, 100), np.float32)
  variables = jax.eval_shape(
      lambda z: g.init({"params": jax.random.PRNGKey(0), "vbn": jax.random.PRNGKey(1)}, z), z)
  assert ("vbn_ref" in variables) == (g_norm.startswith("vbn"))
  if g_norm.startswith("vbn"):
    assert variables["vbn_ref"]["z"].shape == (100, 100)  # model.vbn_ref_size rows of z
    assert "vbn_ref" not in variables["params"]
  out = jax.eval_shape(lambda v, z: g.apply(v, z), variables, z)
  assert out.shape == (4, 28, 28, 1)


def test_vbn_layers_get_the_configured_variant_and_reference_size():
  exp = _build(**{"model.g_norm": "vbnl", "model.vbn_ref_size": 7})
  z = jax.ShapeDtypeStruct((3, 100), np.float32)
  state = jax.eval_shape(lambda z: exp.variant.generator.init(
      {"params": jax.random.PRNGKey(0), "vbn": jax.random.PRNGKey(1)}, z), z)
  assert state["vbn_ref"]["z"].shape == (7, 100)
  assert any("log_gamma" in v for v in state["params"].values() if isinstance(v, dict))


@pytest.mark.parametrize("noise,dropout", [(0.2, 0.0), (0.0, 0.2), (0.0, 0.0)])
def test_discriminator_input_noise_or_dropout(noise, dropout):
  exp = _build(**{"model.d_input_noise": noise, "model.d_dropout": dropout})
  d = exp.variant.discriminator
  assert (d.input_noise, d.input_dropout) == (noise, dropout)


@pytest.mark.parametrize("kernels,dim", [(0, 5), (100, 5), (8, 3)])
def test_minibatch_switch(kernels, dim):
  exp = _build(**{"model.minibatch_kernels": kernels, "model.minibatch_dim": dim})
  d = exp.variant.discriminator
  assert (d.minibatch_kernels, d.minibatch_dim) == (kernels, dim)
  assert d.batch_independent == (kernels == 0)  # MD: D is called on each pure batch separately
  x = jax.ShapeDtypeStruct((6, 28, 28, 1), np.float32)
  variables = jax.eval_shape(lambda x: d.init(
      {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1),
       "dropout": jax.random.PRNGKey(2)}, x), x)
  mb = variables["params"].get("MinibatchDiscrimination_0")
  assert (mb is None) == (kernels == 0)
  if kernels:
    assert mb["theta"].shape == (192, kernels, dim)
    assert variables["params"]["WNDense_0"]["kernel"].shape == (192 + kernels, 10)


@pytest.mark.parametrize("overrides,expect", [
    ({"loss.generator": "minimax"}, ("minimax", 1.0)),
    ({"loss.generator": "non_saturating", "loss.label_smoothing": 0.9}, ("non_saturating", 0.9)),
    ({"loss.generator": "kl_target", "loss.label_smoothing": 0.75, "loss.kl_target": 0.3},
     ("kl_target", 0.75)),
    ({"loss.generator": "feature_matching", "loss.fm_distance": "l1"}, ("feature_matching", 1.0)),
])
def test_loss_switches(overrides, expect):
  v = _build(**overrides).variant
  assert (v.generator_loss, v.label_smoothing) == expect
  if "loss.kl_target" in overrides:
    assert v.kl_target == overrides["loss.kl_target"]


def test_historical_averaging_per_player_and_reading(monkeypatch):
  from itgan_jax.optim import historical_averaging as ha_lib
  calls = []
  original = ha_lib.historical_averaging

  def spy(weight, include_current=False):
    calls.append((weight, include_current))
    return original(weight, include_current=include_current)
  monkeypatch.setattr(ha_lib, "historical_averaging", spy)
  exp = _build("mnist_ssl", **{"optim.historical_averaging_d": 1e-3,
                               "optim.historical_averaging_include_current": True})
  assert calls == [(1e-3, True)]
  params = {"w": np.ones(3, np.float32)}
  assert len(_ha_states(exp.variant.d_tx.init(params))) == 1
  assert not _ha_states(exp.variant.g_tx.init(params))
  calls.clear()
  exp = _build("mnist_ssl", **{"optim.historical_averaging_g": 1e-2})
  assert calls == [(1e-2, False)]
  assert len(_ha_states(exp.variant.g_tx.init(params))) == 1
  assert not _ha_states(exp.variant.d_tx.init(params))

@pytest.mark.parametrize("kernels", [0, 100])
def test_minibatch_switch_on_the_mnist_mlp(kernels):
  """mnist_md_mlp: the official MinibatchLayer between the MLP's last hidden layer and its output."""
  exp = _build("mnist_md_mlp", **{"model.minibatch_kernels": kernels})
  d = exp.variant.discriminator
  assert d.batch_independent == (kernels == 0)
  x = jax.ShapeDtypeStruct((6, 28, 28, 1), np.float32)
  variables = jax.eval_shape(lambda x: d.init(
      {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x), x)
  mb = variables["params"].get("MinibatchDiscrimination_0")
  assert (mb is None) == (kernels == 0)
  if kernels:
    assert mb["theta"].shape == (250, kernels, 5)
  assert variables["params"]["WNDense_5"]["kernel"].shape == (250 + kernels, 10)


def test_mnist_md_mlp_config_is_the_documented_setup():
  c = load_config("mnist_md_mlp")
  assert (c.model.name, c.model.minibatch_kernels, c.model.minibatch_dim) == ("mnist_mlp", 100, 5)
  assert (c.model.d_input_noise, c.model.d_hidden_noise, c.loss.generator) == (0.3, 0.5, "minimax")
  assert (c.train.g_steps_per_d_step, c.optim.lr, c.train.num_epochs) == (3, 3e-4, 500)
  assert (c.data.num_labeled, c.evals.test_error.batch_size, c.data.scale) == (4000, 100, "unit")


def test_generator_steps_per_discriminator_step():
  assert _build(**{"train.g_steps_per_d_step": 3}).variant.g_steps_per_d_step == 3
  assert _build("mnist_ssl").variant.g_steps_per_d_step == 1


def test_mnist_md_config_is_the_documented_setup():
  c = load_config("mnist_md")
  assert (c.model.name, c.model.g_norm, c.model.minibatch_kernels, c.model.minibatch_dim) == (
      "conv", "batch", 100, 5)
  assert (c.model.d_input_noise, c.model.d_dropout, c.loss.generator) == (0.2, 0.0, "minimax")
  assert (c.train.g_steps_per_d_step, c.optim.lr, c.train.num_epochs) == (3, 3e-4, 500)
  assert dict(c.optim.schedule_kwargs) == {"start_epoch": 300, "end_epoch": 500}
  lr = factory.build_lr_schedule(c.optim)
  for epoch in (0, 299, 300, 350, 450, 499, 500):  # WIP script: 3e-4 * min(2.5 - epoch / 200, 1)
    np.testing.assert_allclose(lr(epoch), 3e-4 * max(min(2.5 - epoch / 200, 1.0), 0.0), rtol=1e-5)
  assert (c.data.num_labeled, c.evals.test_error.batch_size) == (4000, 100)


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,overrides,message", [
    ("mnist_ssl", {"model.g_norm": "vbn"}, "not supported by mnist_mlp"),
    ("mnist_md_mlp", {"model.minibatch_kernels": -1}, "minibatch_kernels"),
    ("mnist_md_mlp", {"model.minibatch_dim": 0}, "minibatch_dim"),
    ("mnist_ssl", {"model.d_dropout": 0.2}, "d_dropout"),
    ("mnist_ssl", {"loss.fm_layer": 5}, "loss.fm_layer=5"),
    ("mnist_md", {"loss.generator": "feature_matching", "loss.fm_layer": -2}, "loss.fm_layer=-2"),
    ("mnist_md", {"model.g_norm": "layer"}, "model.g_norm"),
    ("mnist_md", {"model.d_input_noise": 0.2, "model.d_dropout": 0.2}, "exclusive"),
    ("mnist_md", {"model.d_dropout": 1.0, "model.d_input_noise": 0.0}, "d_dropout"),
    ("mnist_md", {"model.minibatch_kernels": -1}, "minibatch_kernels"),
    ("mnist_md", {"model.g_channels": (256, 128, 64)}, "multiple of 8"),
    ("mnist_md", {"model.vbn_ref_size": 0, "model.g_norm": "vbn"}, "vbn_ref_size"),
    ("mnist_md", {"loss.label_smoothing": 0.0}, "label_smoothing"),
    ("mnist_md", {"loss.label_smoothing": 1.5}, "label_smoothing"),
    ("mnist_md", {"loss.generator": "kl_target", "loss.kl_target": 0.0}, "kl_target"),
    ("mnist_md", {"loss.generator": "hinge"}, "loss.generator"),
    ("mnist_md", {"optim.historical_averaging_g": -1.0}, "historical_averaging_g"),
    ("mnist_md", {"train.g_steps_per_d_step": 0}, "g_steps_per_d_step"),
])
def test_invalid_combinations_fail_at_build_time(name, overrides, message):
  with pytest.raises(ValueError) as info:
    _build(name, **overrides)
  assert message in str(info.value), str(info.value)


# ---------------------------------------------------------------------------------------------


def test_tiny_minibatch_discrimination_run_one_chunk(tmp_path, rbg_prng):
  """configs/mnist_md.py:tiny with narrow networks: one jitted chunk of 1 iteration (D step with
  minibatch features on three pure batches + 3 minimax G steps, VBN generator), evaluation,
  samples, checkpoint."""
  config = load_config("mnist_md", "tiny", **{
      "data.num_labeled": 100, "num_devices": 1, "log.progress": False, "log.tensorboard": False,
      "train.batch_size": 16, "train.steps_per_epoch": 1, "train.num_epochs": 1,
      "train.steps_per_call": 1, "model.d_channels": (8, 16), "model.g_channels": (16, 8),
      "model.minibatch_kernels": 6, "model.minibatch_dim": 3, "model.g_norm": "vbn",
      "model.vbn_ref_size": 8, "evals.test_error.max_examples": 32, "evals.test_error.batch_size": 16,
      "evals.samples.num_samples": 4, "data.init_size": 32})
  record = experiment.train(config, str(tmp_path))
  assert record["epoch"] == 1
  for key in ("loss_lab", "loss_unl", "loss_gen", "test_err_ema"):
    assert np.isfinite(record[key]), key
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[-1])["epoch"] == 1
  assert list((tmp_path / "samples").glob("*.png"))


def test_mnist_mlp_minibatch_layer_reads_noise_free_features():
  """The minibatch layer's input is the last hidden layer's post-ReLU output (returned as the
  feature-matching feature, before D's N(0, 0.5^2) noise), not that output plus noise."""
  from itgan_jax.models.mnist import MnistDiscriminator
  d = MnistDiscriminator(minibatch_kernels=4, minibatch_dim=3)
  x = np.random.RandomState(0).rand(6, 28, 28, 1).astype(np.float32)
  # Jitted: eagerly, the unrolled threefry of D's noise layers dispatches op by op (23 s vs 9 s).
  variables = jax.jit(d.init)({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)},
                              np.random.RandomState(1).rand(32, 28, 28, 1).astype(np.float32))
  apply = jax.jit(functools.partial(d.apply, capture_intermediates=True, mutable=["intermediates"]))
  (_, features), state = apply(variables, x, rngs={"noise": jax.random.PRNGKey(2)})
  out = state["intermediates"]["MinibatchDiscrimination_0"]["__call__"][0]
  assert out.shape == (6, 250 + 4)
  np.testing.assert_array_equal(np.asarray(out[:, :250]), np.asarray(features[-1]))
