"""End-to-end tests of the shared loop on tiny MNIST configs: outputs, resume, signals, NaN stop."""

from __future__ import annotations

import json
import os
import signal

import jax
import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.train import loop
from itgan_jax.train.checkpoint import Checkpointer
from tests.helpers import load_config


def _tiny(shared_data_dir, **overrides):
  # 4 of the 8 fake devices: the official batch of 100 splits evenly over them.
  return load_config("mnist_ssl", "tiny", **{"data.dir": str(shared_data_dir), "num_devices": 4,
                                             "log.progress": False, **overrides})


def _restore_state(workdir, config):
  exp = experiment.build(config)
  template = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), exp.init_batch)
  state, meta = Checkpointer(workdir).restore(template)
  return state, meta


def _assert_states_equal(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _records(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(shared_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  config = _tiny(shared_data_dir)
  record = experiment.train(config, str(workdir))
  return workdir, config, record


def test_run_writes_metrics_samples_checkpoints(uninterrupted):
  workdir, config, record = uninterrupted
  records = _records(workdir)
  assert [r["epoch"] for r in records] == [1, 2]
  for key in ("loss_lab", "loss_unl", "loss_gen", "train_err", "test_errors_ema",
              "test_err_raw", "epoch_time_s"):
    assert key in records[-1], key
  assert 0 <= record["test_errors_ema"] <= 10000
  assert (workdir / "samples" / "epoch_0002.png").exists()
  assert (workdir / "samples" / "latest.png").exists()
  assert (workdir / "curves.png").exists()
  assert any((workdir / "tensorboard").iterdir())
  assert Checkpointer(workdir).latest_step() == 2 * config.train.steps_per_epoch
  assert json.loads((workdir / "final.json").read_text())["epoch"] == 2


def test_resume_from_epoch_boundary_is_bit_exact(uninterrupted, shared_data_dir, tmp_path):
  full_dir, config, _ = uninterrupted
  first = _tiny(shared_data_dir, **{"train.num_epochs": 1})
  experiment.train(first, str(tmp_path))
  experiment.train(config, str(tmp_path))  # same command with the full schedule resumes
  _assert_states_equal(_restore_state(full_dir, config)[0], _restore_state(tmp_path, config)[0])
  a, b = _records(full_dir), _records(tmp_path)
  for ra, rb in zip(a, b):
    for key in ("loss_lab", "loss_unl", "loss_gen", "test_errors_ema", "test_errors_raw"):
      assert ra[key] == rb[key], key


def test_cpu_copy_region_analysis_changes_no_bit_on_one_device(shared_data_dir, tmp_path):
  """The chunk's XLA option only changes buffer copies: on one device the run with it off is
  bit-identical. (On several devices it may reorder cross-device sums: rounding-level changes.)"""
  on = _tiny(shared_data_dir, num_devices=1)
  off = _tiny(shared_data_dir, num_devices=1, **{"train.xla_cpu_region_copy_analysis": False})
  assert loop.chunk_compiler_options(on.train) == {
      "xla_cpu_copy_insertion_use_region_analysis": True}
  assert loop.chunk_compiler_options(off.train) == {}
  experiment.train(on, str(tmp_path / "on"))
  experiment.train(off, str(tmp_path / "off"))
  _assert_states_equal(_restore_state(tmp_path / "on", on)[0],
                       _restore_state(tmp_path / "off", off)[0])


def test_sigterm_mid_epoch_checkpoints_and_resume_is_bit_exact(uninterrupted, shared_data_dir,
                                                               tmp_path):
  full_dir, config, _ = uninterrupted
  calls = []

  def send_sigterm_once(step):
    calls.append(step)
    if len(calls) == 1:  # after the first chunk (mid-epoch: steps_per_call < steps_per_epoch)
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(KeyboardInterrupt, match="Rerun the same command"):
    experiment.train(config, str(tmp_path), chunk_callback=send_sigterm_once)
  assert Checkpointer(tmp_path).latest_step() == config.train.steps_per_call
  experiment.train(config, str(tmp_path))
  _assert_states_equal(_restore_state(full_dir, config)[0], _restore_state(tmp_path, config)[0])
  assert [r["loss_gen"] for r in _records(full_dir)] == [r["loss_gen"] for r in _records(tmp_path)]


def test_mid_epoch_checkpoints_every_steps_survive_a_crash_bit_exactly(uninterrupted,
                                                                       shared_data_dir, tmp_path):
  """checkpoint.every_steps saves inside an epoch; a crash (no signal, no handler) later in that
  epoch loses only the steps since, and the rerun equals the uninterrupted run bit for bit."""
  full_dir, config, _ = uninterrupted
  assert config.train.steps_per_call < config.train.steps_per_epoch
  every = _tiny(shared_data_dir, **{"checkpoint.every_steps": config.train.steps_per_call})

  def crash_in_second_chunk(step):
    if step == 2 * config.train.steps_per_call:
      raise RuntimeError("simulated crash")

  with pytest.raises(RuntimeError, match="simulated crash"):
    experiment.train(every, str(tmp_path), chunk_callback=crash_in_second_chunk)
  assert Checkpointer(tmp_path).latest_step() == config.train.steps_per_call  # mid-epoch
  experiment.train(config, str(tmp_path))  # the same command without the key also resumes
  _assert_states_equal(_restore_state(full_dir, config)[0], _restore_state(tmp_path, config)[0])
  assert [r["loss_gen"] for r in _records(full_dir)] == [r["loss_gen"] for r in _records(tmp_path)]


def test_sigterm_in_a_chunk_that_ends_on_every_steps_stops_cleanly(shared_data_dir, tmp_path):
  """The mid-epoch save of checkpoint.every_steps and the stop's save fall on the same step: one
  checkpoint, a clean stop (not orbax's 'step already exists')."""
  config = _tiny(shared_data_dir, **{"checkpoint.every_steps": 2})
  assert config.train.steps_per_call == 2 < config.train.steps_per_epoch

  def send_sigterm_once(step):
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(KeyboardInterrupt, match="Rerun the same command"):
    experiment.train(config, str(tmp_path), chunk_callback=send_sigterm_once)
  assert Checkpointer(tmp_path).latest_step() == 2


@pytest.mark.parametrize("value", [0, -3, True])
def test_bad_every_steps_is_refused(shared_data_dir, value):
  with pytest.raises(ValueError, match="checkpoint.every_steps"):
    loop.check_config(_tiny(shared_data_dir, **{"checkpoint.every_steps": value}))


@pytest.mark.parametrize("value", [0, -1, True])
def test_bad_curves_every_epochs_is_refused(shared_data_dir, value):
  with pytest.raises(ValueError, match="log.curves_every_epochs"):
    loop.check_config(_tiny(shared_data_dir, **{"log.curves_every_epochs": value}))


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(shared_data_dir, tmp_path,
                                                                       monkeypatch):
  config = _tiny(shared_data_dir, **{"train.num_epochs": 3})
  from itgan_jax.variants import ssl

  original = ssl.SemiSupervisedGAN.train_step

  def poisoned(self, state, batch, rng):
    state, metrics = original(self, state, batch, rng)
    bad = state.step > 2 * config.train.steps_per_epoch  # only in the third epoch
    metrics["loss_gen"] = jax.numpy.where(bad, jax.numpy.nan, metrics["loss_gen"])
    return state, metrics

  monkeypatch.setattr(ssl.SemiSupervisedGAN, "train_step", poisoned)
  with pytest.raises(loop.NonFiniteLossError, match=r"loss_gen became NaN/Inf.*last good"):
    experiment.train(config, str(tmp_path))
  assert Checkpointer(tmp_path).latest_step() == 2 * config.train.steps_per_epoch
