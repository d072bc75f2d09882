"""The CIFAR-10 semi-supervised configs and the Table 3 presets: official settings, one switch per
ablation column, the MD script's labeled subset, and every preset builds, initialises and trains.

Runs use a small synthetic CIFAR-shaped dataset (no files needed).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.data import ssl as ssl_data
from tests.helpers import fake_dataset, load_config, serve_datasets

TABLE3 = ("our_methods", "no_vbn", "no_l_ha", "no_ls", "no_l", "no_mbf")


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
  data = fake_dataset("cifar10", (32, 32, 3), 1000, 200)
  serve_datasets(monkeypatch, data)


def _flat(config) -> dict:
  out = {}

  def walk(prefix, node):
    for key, value in node.items():
      if isinstance(value, dict):
        walk(f"{prefix}{key}.", value)
      else:
        out[prefix + key] = value
  walk("", config.to_dict())
  return out


def _diff(a, b) -> set[str]:
  fa, fb = _flat(a), _flat(b)
  return {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}


# ---------------------------------------------------------------------------------------------
def test_feature_matching_config_is_the_official_script():
  c = load_config("cifar10_ssl")
  assert (c.variant, c.data.num_labeled, c.data.seed_data, c.data.subset_rng) == (
      "ssl", 4000, 1, "seed_data")
  assert (c.data.scale, c.data.init_size, c.model.z_dist, c.model.z_dim) == (
      "cifar_official", 500, "uniform01", 100)
  assert (tuple(c.model.d_channels), tuple(c.model.g_channels)) == ((96, 192), (512, 256, 128))
  assert (c.model.d_dropout, c.model.d_input_noise, c.model.d_hidden_dropout) == (0.2, 0.0, 0.5)
  assert (c.model.g_norm, c.model.minibatch_kernels) == ("batch", 0)
  assert (c.loss.generator, c.loss.fm_distance, c.loss.fm_layer) == ("feature_matching", "l1", -1)
  assert (c.optim.lr, c.optim.b1, c.optim.eps_inside_sqrt, c.optim.ema_rate) == (
      3e-4, 0.5, True, 1e-4)
  assert (c.optim.schedule, dict(c.optim.schedule_kwargs)) == (
      "linear_decay", {"start_epoch": 800, "end_epoch": 1200})
  assert (c.train.batch_size, c.train.num_epochs, c.train.g_steps_per_d_step) == (100, 1200, 1)
  assert c.evals.test_error.max_examples is None


def test_minibatch_preset_differs_from_feature_matching_in_the_md_script_settings_only():
  fm, md = load_config("cifar10_ssl"), load_config("cifar10_ssl", "md")
  assert _diff(fm, md) == {"data.subset_rng", "model.d_input_noise", "model.d_dropout",
                           "model.minibatch_kernels", "loss.generator",
                           "train.g_steps_per_d_step", "evals.test_error.batch_size"}
  assert (md.model.d_input_noise, md.model.minibatch_kernels, md.model.minibatch_dim) == (
      0.2, 100, 5)
  assert (md.loss.generator, md.train.g_steps_per_d_step, md.evals.test_error.batch_size) == (
      "minimax", 3, 100)


@pytest.mark.parametrize("labels", [1000, 2000, 4000, 8000])
def test_label_counts(labels):
  assert load_config("cifar10_ssl", f"labels={labels}").data.num_labeled == labels


def test_label_count_outside_the_paper_cells_is_refused():
  with pytest.raises(ValueError, match="1000, 2000, 4000, 8000"):
    load_config("cifar10_ssl", "labels=3000")


EXPECTED_SWITCH = {
    "no_vbn": {"model.g_norm"},
    "no_ls": {"loss.label_smoothing"},
    "no_mbf": {"model.minibatch_kernels"},
    "no_l": {"variant", "evals.test_error.*"},
    "no_l_ha": {"variant", "evals.test_error.*", "optim.historical_averaging_d",
                "optim.historical_averaging_g"},
}


@pytest.mark.parametrize("column", sorted(EXPECTED_SWITCH))
def test_table3_column_differs_from_our_methods_only_in_its_switch(column):
  ours = load_config("cifar10_table3")
  other = load_config("cifar10_table3", f"column={column}")
  diff = {("evals.test_error.*" if k.startswith("evals.test_error.") else k)
          for k in _diff(ours, other)}
  assert diff == EXPECTED_SWITCH[column]


def test_table3_our_methods_is_md_plus_vbn_and_label_smoothing():
  ours, md = load_config("cifar10_table3"), load_config("cifar10_ssl", "md")
  assert (ours.model.g_norm, ours.loss.label_smoothing) == ("vbn", 0.75)
  assert _diff(md, ours) == {"model.g_norm", "loss.label_smoothing", "evals.metrics.every_epochs"}
  ablated = load_config("cifar10_table3", "column=no_l_ha")
  assert ablated.optim.historical_averaging_d == ablated.optim.historical_averaging_g > 0
  assert (ablated.variant, load_config("cifar10_table3", "column=no_ls").loss.label_smoothing) == (
      "gan", 1.0)


def test_table3_unknown_column_is_refused():
  with pytest.raises(ValueError, match="our_methods"):
    load_config("cifar10_table3", "column=no_everything")


# ---------------------------------------------------------------------------------------------
def test_md_script_labeled_subset_comes_from_seed_after_two_draws():
  """train_cifar_minibatch_discrimination.py: rng = RandomState(seed); rng.randint(2**15) seeds
  Theano's MRG stream, a second seeds Lasagne; then inds = rng.permutation(N) picks the subset."""
  y = np.arange(1000) % 10
  rng = np.random.RandomState(7)
  rng.randint(2 ** 15)
  rng.randint(2 ** 15)
  inds = rng.permutation(1000)
  expected = np.concatenate([inds[y[inds] == j][:4] for j in range(10)])
  np.testing.assert_array_equal(ssl_data.select_labeled(y, 4, 7, 10, draws_before=2), expected)
  assert not np.array_equal(ssl_data.select_labeled(y, 4, 7, 10), expected)

  one_pass = {"data.num_labeled": 40, "train.steps_per_epoch": 3}  # 48 rows: every label once
  exp_md = experiment.build(load_config("cifar10_ssl", "md,tiny", seed=7, **one_pass))
  exp_fm = experiment.build(load_config("cifar10_ssl", "tiny", **{"data.seed_data": 7},
                                        **one_pass))
  lab_md = np.unique(exp_md.epoch_plan(0)["lab"])
  lab_fm = np.unique(exp_fm.epoch_plan(0)["lab"])
  np.testing.assert_array_equal(lab_md, np.sort(expected))
  np.testing.assert_array_equal(lab_fm, np.sort(ssl_data.select_labeled(y, 4, 7, 10)))


def test_bad_subset_rng_is_refused():
  with pytest.raises(ValueError, match="subset_rng"):
    experiment.build(load_config("cifar10_ssl", "tiny", **{"data.subset_rng": "seeds"}))


# ---------------------------------------------------------------------------------------------
PRESETS = [("cifar10_ssl", "tiny"), ("cifar10_ssl", "tiny,md"), ("cifar10_ssl", "tiny,labels=1000")] + [
    ("cifar10_table3", f"tiny,column={column}") for column in TABLE3]


@pytest.mark.parametrize("name,arg", PRESETS)
def test_every_preset_builds_and_initialises(name, arg):
  """Traced only (no compilation): the experiment builds and its state has float32 leaves."""
  exp = experiment.build(load_config(name, arg, **{"data.num_labeled": 40}))
  state = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), exp.init_batch)
  assert {leaf.dtype for leaf in jax.tree.leaves(state.d.params)} == {np.dtype(np.float32)}
  assert exp.batch_size == 16 and exp.steps_per_epoch == 2


SSL_KEYS = ("loss_lab", "loss_unl", "loss_gen", "test_err_ema")


@pytest.mark.parametrize("name,arg,keys", [
    ("cifar10_ssl", "tiny", SSL_KEYS),
    ("cifar10_table3", "tiny", SSL_KEYS),   # "Our methods": MD + VBN + label smoothing + labels
    pytest.param("cifar10_ssl", "tiny,md", SSL_KEYS, marks=pytest.mark.slow),
    pytest.param("cifar10_table3", "tiny,column=no_l_ha", ("loss_d", "loss_gen"),
                 marks=pytest.mark.slow),
])
def test_preset_trains_one_step(tmp_path, rbg_prng, name, arg, keys):
  config = load_config(name, arg, **{
      "num_devices": 1, "log.progress": False, "log.tensorboard": False,
      "train.steps_per_epoch": 1, "train.num_epochs": 1, "data.num_labeled": 40})
  record = experiment.train(config, str(tmp_path))
  assert record["epoch"] == 1
  for key in keys:
    assert np.isfinite(record[key]), key
  assert list((tmp_path / "samples").glob("*.png"))
