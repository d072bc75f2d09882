"""configs/progan_table1.py: each Table 1 row's switches, and that rows train on an image folder."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.train import sharding
from tests.helpers import load_config
from tests.test_image_folder import make_folder

ROWS = ("a", "b", "c", "d", "e_star", "e", "f", "g", "h")
KEYS = ("schedule.initial_resolution", "train.batch_size", "train.update",
        "train.d_steps_per_g_step", "optim.b2", "loss.drift", "model.normalize_latents",
        "model.g_activation", "model.tanh_output", "model.d_layer_norm", "model.g_norm",
        "model.minibatch_kernels", "model.mbstd_group_size", "model.use_wscale", "optim.lr")


def _get(config, dotted):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def _changes(row_a, row_b):
  a, b = load_config("progan_table1", f"row={row_a}"), load_config("progan_table1", f"row={row_b}")
  return {k for k in KEYS if _get(a, k) != _get(b, k)}


def test_each_row_adds_its_change_to_the_previous_row():
  """Table 1 is cumulative: (b) adds growing, (c) the small minibatch, (d) the revised
  training parameters, (e*) minibatch discrimination, (e) replaces it by minibatch stddev,
  (f) equalized lr, (g) pixel norm, (h) = (g) trained to convergence."""
  assert _changes("a", "b") == {"schedule.initial_resolution"}
  assert _changes("b", "c") == {"train.batch_size"}
  assert _changes("c", "d") == {"train.update", "train.d_steps_per_g_step", "optim.b2",
                                "loss.drift", "model.normalize_latents", "model.g_activation",
                                "model.tanh_output", "model.d_layer_norm", "model.g_norm"}
  assert _changes("d", "e_star") == {"model.minibatch_kernels"}
  assert _changes("e_star", "e") == {"model.minibatch_kernels", "model.mbstd_group_size"}
  assert _changes("e", "f") == {"model.use_wscale", "optim.lr"}
  assert _changes("f", "g") == {"model.g_norm"}
  assert _changes("g", "h") == set()
  a, h = load_config("progan_table1", "row=a"), load_config("progan_table1", "row=h")
  assert (a.schedule.initial_resolution, a.train.batch_size, a.model.g_norm) == (128, 64, "batch")
  assert (h.model.g_norm, h.model.mbstd_group_size, h.model.use_wscale, h.optim.lr) == (
      "pixel", None, True, 1e-3)
  assert h.train.num_epochs * h.train.steps_per_epoch * h.train.batch_size == 10_000_000
  with pytest.raises(ValueError, match="row='z'"):
    load_config("progan_table1", "row=z")


@pytest.mark.parametrize("row", ["a", "e_star", "h"])
def test_row_takes_a_step_on_an_image_folder(row, tmp_path, rbg_prng):
  folder = make_folder(tmp_path / "data", counts=(6, 5, 6))   # 17 images: 4 steps of 4
  config = load_config("progan_table1", f"row={row},tiny", **{
      "data.dir": str(folder), "num_devices": 1, "data.image_size": 8,
      "schedule.initial_resolution": 8 if row == "a" else 4})   # 8x8: the cheapest programs
  exp = experiment.build(config)
  v = exp.variant
  assert exp.init_batch.shape == (4, 8, 8, 3)
  state = jax.jit(v.init)(jax.random.PRNGKey(0), exp.init_batch)
  rows = {k: r[:1] for k, r in exp.epoch_plan(0).items()}
  values = jax.device_get(exp.feeder.chunk_inputs(rows, sharding.make_mesh(1)))
  batch = exp.feeder.batch({}, {k: x[0] for k, x in values.items()})   # decoded images
  new, metrics = jax.jit(v.phase_train_step(0))(state, batch, jax.random.PRNGKey(1))
  assert int(new.step) == 1
  for key, value in metrics.items():
    assert np.isfinite(float(value)), key
  assert v.schedule.phases[0].resolution == (8 if row == "a" else 4)
