"""configs/svhn_ssl.py: the official settings, and tiny FM / :md runs on generated .mat files."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.data import datasets, svhn
from itgan_jax.optim import schedules
from itgan_jax.variants import base
from tests.helpers import load_config, write_svhn_mats


@pytest.fixture
def svhn_dir(tmp_path, monkeypatch):
  """Generated train/test .mat files (30 / 20 images) read through the public loader (the sha256
  check of the original files switched off for them)."""
  monkeypatch.delenv(datasets.ENV_VAR, raising=False)
  write_svhn_mats(tmp_path / "data" / "svhn")
  monkeypatch.setitem(datasets.READERS, "svhn", dataclasses.replace(
      svhn.READER, read=lambda paths: svhn.load(paths, verify=False)))
  return tmp_path / "data"


def _tiny(arg, data_dir, **overrides):
  return load_config("svhn_ssl", arg, **{"data.dir": str(data_dir), "num_devices": 1,
                                         "log.progress": False, "log.print_epochs": False,
                                         **overrides})


def test_official_feature_matching_settings():
  c = load_config("svhn_ssl")
  assert (c.variant, c.data.name, c.data.scale) == ("ssl", "svhn", "svhn_official")
  assert c.data.num_labeled == 1000 and c.data.seed_data == 1 and c.data.init_size == 500
  assert (c.model.name, tuple(c.model.d_channels), tuple(c.model.g_channels)) == \
      ("conv", (64, 128), (512, 256, 128))
  assert (c.model.d_dropout, c.model.d_hidden_dropout, c.model.d_input_noise) == (0.2, 0.5, 0.0)
  assert c.model.minibatch_kernels == 0 and c.model.g_norm == "batch"
  assert (c.loss.generator, c.loss.fm_distance, c.loss.fm_layer) == ("feature_matching", "l1", -1)
  assert c.train.g_steps_per_d_step == 1 and c.train.batch_size == 100
  assert c.train.num_epochs == 900
  assert (c.optim.lr, c.optim.b1, c.optim.eps_inside_sqrt) == (3e-4, 0.5, True)
  assert (c.optim.ema_rate, c.optim.ema_zero_init) == (1e-4, True)
  assert c.evals.test_error.batch_size == 100 and c.evals.test_error.max_examples is None
  # 732 iterations per epoch on the 73,257 training images; whole chunks per epoch.
  assert base.steps_per_epoch(c.train, svhn.NUM_EXAMPLES["train"]) == 732
  assert 732 % c.train.steps_per_call == 0
  # The official 3e-4 * min(3 - epoch/300, 1), computed here for every epoch 0..899.
  lr = schedules.make_schedule(c.optim.schedule, base_lr=c.optim.lr, **c.optim.schedule_kwargs)
  want = np.float32(3e-4) * np.minimum(3.0 - np.arange(900) / 300.0, 1.0)
  np.testing.assert_allclose([float(lr(e)) for e in range(900)], want, rtol=1e-6, atol=1e-12)


def test_minibatch_discrimination_preset_and_label_counts():
  c = load_config("svhn_ssl", "md,labels=500")
  assert tuple(c.model.d_channels) == (96, 192)
  assert (c.model.d_input_noise, c.model.d_dropout, c.model.d_hidden_dropout) == (0.2, 0.0, 0.5)
  assert (c.model.minibatch_kernels, c.model.minibatch_dim) == (100, 5)
  assert c.loss.generator == "minimax" and c.train.g_steps_per_d_step == 3
  assert c.data.num_labeled == 500 and c.optim.schedule_kwargs.to_dict() == dict(
      start_epoch=600, end_epoch=900)
  assert load_config("svhn_ssl", "labels=2000").data.num_labeled == 2000
  with pytest.raises(ValueError, match=r"labels=250 is not one of .*\(500, 1000, 2000\)"):
    load_config("svhn_ssl", "labels=250")
  with pytest.raises(ValueError, match="unknown config argument 'minibatch'"):
    load_config("svhn_ssl", "minibatch")


def test_build_on_generated_files(svhn_dir):
  exp = experiment.build(_tiny("tiny", svhn_dir))
  assert exp.dataset.name == "svhn" and exp.dataset.train_x.shape == (30, 32, 32, 3)
  assert exp.steps_per_epoch == 2 and exp.init_batch.shape == (16, 32, 32, 3)
  np.testing.assert_allclose(exp.init_batch.min(), -1.0, atol=0.01)  # (x - 127.5) / 127.5
  assert exp.init_batch.max() <= 1.0
  md = experiment.build(_tiny("md,tiny", svhn_dir))
  assert not md.variant.discriminator.batch_independent
  assert exp.variant.discriminator.batch_independent
  assert (md.variant.generator_loss, md.variant.g_steps_per_d_step) == ("minimax", 3)


def _run(arg, svhn_dir, workdir):
  """Trains the tiny config for one epoch of 2 iterations; returns its metrics records."""
  experiment.train(_tiny(arg, svhn_dir, **{"train.num_epochs": 1}), str(workdir))
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def _check_records(records):
  assert [r["epoch"] for r in records] == [1]
  r = records[0]
  for key in ("loss_lab", "loss_unl", "loss_gen", "train_err"):
    assert math.isfinite(r[key]), (key, r[key])
  # 20 test images in batches [0, 8), [8, 16), [12, 20).
  assert 0 <= r["test_errors_ema"] <= 20 and r["test_err_ema"] == r["test_errors_ema"] / 20
  assert 0 <= r["test_errors_raw"] <= 20


def test_tiny_feature_matching_run(svhn_dir, tmp_path, rbg_prng):
  records = _run("tiny", svhn_dir, tmp_path / "fm")
  _check_records(records)
  assert (tmp_path / "fm" / "samples" / "epoch_0001.png").exists()


@pytest.mark.slow  # a second cold XLA:CPU compile of the conv game (~1 min CPU; 15 s cached)
def test_tiny_minibatch_discrimination_run(svhn_dir, tmp_path, rbg_prng):
  _check_records(_run("md,tiny", svhn_dir, tmp_path / "md"))
