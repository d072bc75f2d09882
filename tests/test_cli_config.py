"""The command line: config files, overrides, clear errors for typos, wrong types and bad values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from itgan_jax import experiment
from itgan_jax.optim import factory
from itgan_jax.config_args import parse_arg
from tests.helpers import REPO, load_config


def _main(*args, env=None, timeout=300):
  return subprocess.run([sys.executable, "-m", "itgan_jax.main", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})


@pytest.mark.parametrize("labels", [20, 50, 100, 200])
def test_label_counts_select_class_balanced_subsets(labels):
  config = load_config("mnist_ssl", f"labels={labels}")
  assert config.data.num_labeled == labels


def test_prerelease_schedule_is_the_official_pre_0fa06b5_rate():
  """lr = 0.001 * min(3 - epoch/100, 1) of the script before 'param averaging everywhere'."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  default = factory.build_lr_schedule(load_config("mnist_ssl").optim)
  config = load_config("mnist_ssl", "prerelease")
  schedule = factory.build_lr_schedule(config.optim)
  for epoch in (0, 150, 199, 200, 250, 299, 300):
    want = np.float32(0.001 * min(3.0 - epoch / 100.0, 1.0))
    np.testing.assert_allclose(float(schedule(epoch)), want, rtol=1e-6, atol=1e-12)
    assert float(default(epoch)) == np.float32(0.003)
  assert config.train.num_epochs == 300 and config.optim.ema_rate == 1e-4


def test_parse_arg_rejects_unknown_keys_and_wrong_types():
  with pytest.raises(ValueError, match="unknown config argument 'lables'"):
    parse_arg("lables=50", labels=100)
  with pytest.raises(ValueError, match="must be of type int"):
    parse_arg("labels=many", labels=100)
  assert parse_arg("demo", demo=False, labels=1).demo is True


def test_typo_in_override_key_fails_with_suggestion(tmp_path):
  result = _main("--config=configs/mnist_ssl.py", f"--workdir={tmp_path}",
                 "--config.optim.lrr=0.1")
  assert result.returncode == 2
  assert "lrr" in result.stderr and "Did you mean" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, no traceback


def test_wrong_type_in_override_fails(tmp_path):
  result = _main("--config=configs/mnist_ssl.py", f"--workdir={tmp_path}",
                 "--config.train.batch_size=abc")
  assert result.returncode == 2
  assert "batch_size" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_data_names_every_way_to_provide_it(tmp_path):
  result = _main("--config=configs/mnist_ssl.py:tiny", f"--workdir={tmp_path / 'run'}",
                 f"--config.data.dir={tmp_path / 'nowhere'}", env={"ITGAN_DATA_DIR": ""})
  assert result.returncode == 1
  for hint in ("train-images-idx3-ubyte.gz", "data.dir", "ITGAN_DATA_DIR", "allow_download",
               "tfds_data_dir"):
    assert hint in result.stderr, hint


@pytest.mark.parametrize("key,value,message", [
    ("variant", "growing", "config.variant"),
    ("model.name", "resnet", "model family"),
    ("loss.generator", "wasserstein", "loss.generator"),
    ("loss.fm_distance", "l3", "feature matching distance 'l3'"),
    ("optim.schedule", "cosine", "optim.schedule"),
    ("data.num_labeled", 55, "multiple of the 10 classes"),
    ("data.scale", "zero_one", "data.scale"),
    # zero or negative numbers: refused at build time, before any step is compiled
    ("checkpoint.max_to_keep", 0, "checkpoint.max_to_keep=0"),
    ("checkpoint.every_epochs", 0, "checkpoint.every_epochs=0"),
    ("train.num_epochs", 0, "train.num_epochs=0"),
    ("train.steps_per_epoch", 0, "train.steps_per_epoch=0"),
    ("data.init_size", 0, "data.init_size=0"),
    ("optim.lr", -1e-3, "optim.lr=-0.001"),
    ("evals.test_error.every_epochs", 0, "every_epochs=0"),
    ("evals.test_error.batch_size", 0, "batch_size=0"),
    ("evals.test_error.max_examples", 0, "max_examples=0"),
    ("evals.samples.num_samples", 0, "num_samples=0"),
])
def test_invalid_values_fail_with_clear_messages(shared_data_dir, key, value, message):
  config = load_config("mnist_ssl", "tiny", **{"data.dir": str(shared_data_dir), key: value})
  with pytest.raises(ValueError) as info:
    exp = experiment.build(config)
    # Some values are only used when the step is traced: trace one init + step.
    import jax
    state = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), exp.init_batch)
    batch = exp.feeder.gather(exp.feeder.put(None), {k: v[0] for k, v in exp.epoch_plan(0).items()})
    jax.eval_shape(exp.variant.train_step, state, batch, jax.random.PRNGKey(1))
  if message:
    assert message in str(info.value)
