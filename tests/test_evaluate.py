"""The evaluation CLI (samples file and run directory) and the config-scheduled metrics."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from itgan_jax import evaluate
from itgan_jax.metrics import classifier
from tests.helpers import load_config


# ------------------------------------------------------------------------------------------------
# CLI on real MNIST.

@pytest.fixture(scope="module")
def mnist(shared_data_dir):
  from itgan_jax.data import datasets
  return datasets.load_dataset("mnist", source="files", data_dir=shared_data_dir)


def test_cli_scores_a_samples_file(mnist, shared_data_dir, tmp_path):
  path = tmp_path / "real.npz"
  np.savez(path, images=mnist.test_x[:2000])
  record = evaluate.run(evaluate.EvalArgs(
      samples=str(path), reference="mnist_train", data_dir=str(shared_data_dir),
      num_reference=2000, metrics="mnist_score,classifier_fd"))
  written = json.loads((tmp_path / "real.metrics.json").read_text())
  assert written["metrics"] == record["metrics"]
  m = record["metrics"]
  assert 9.0 < m["mnist_score"] <= 10 and m["classifier_fd"] >= 0
  assert record["classifier_dataset"] == "mnist" and record["num_reference"] == 2000
  assert record["classifier_weights_sha256"] == classifier.read_sha256_table()[
      "mnist_classifier.npz"]
  with pytest.raises(ValueError, match="need real images: pass --reference"):
    evaluate.run(evaluate.EvalArgs(samples=str(path), metrics="classifier_fd"))
  with pytest.raises(ValueError, match="exactly one of"):
    evaluate.run(evaluate.EvalArgs(metrics="mnist_score"))
  bad = tmp_path / "bad.npz"
  np.savez(bad, x=mnist.test_x[:4])
  with pytest.raises(ValueError, match="no 'images' array"):
    evaluate.run(evaluate.EvalArgs(samples=str(bad), metrics="mnist_score"))
  text = tmp_path / "notes.npz"
  text.write_text("not an archive")
  with pytest.raises(ValueError, match="is not an .npz archive"):
    evaluate.run(evaluate.EvalArgs(samples=str(text), metrics="mnist_score"))


def test_named_real_images(mnist, shared_data_dir):
  x, desc = evaluate.load_images("mnist_test[1::2]", str(shared_data_dir))
  np.testing.assert_array_equal(x, mnist.test_x[1::2])
  assert desc == "mnist_test[1::2]"
  x, _ = evaluate.load_images("mnist_train[10:20]", str(shared_data_dir))
  np.testing.assert_array_equal(x, mnist.train_x[10:20])
  with pytest.raises(ValueError, match="step must be >= 1"):
    evaluate.load_images("mnist_test[::0]", str(shared_data_dir))
  with pytest.raises(ValueError, match="use <dataset>_train or <dataset>_test"):
    evaluate.load_images("stl10_test", str(shared_data_dir))


@pytest.fixture(scope="module")
def tiny_run(shared_data_dir, tmp_path_factory):
  """A run directory with config.json and a checkpoint of the freshly initialised state."""
  from itgan_jax import experiment
  from itgan_jax.train.checkpoint import Checkpointer
  workdir = tmp_path_factory.mktemp("run")
  config = load_config("mnist_ssl", "tiny", **{"data.dir": str(shared_data_dir)})
  exp = experiment.build(config)
  state = jax.jit(exp.variant.init)(jax.random.PRNGKey(3), exp.init_batch)
  state = state.replace(step=state.step + 8)   # as after 2 tiny epochs of 4 steps
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  ckpt = Checkpointer(workdir)
  ckpt.save(8, state, {"epoch_sums": {}, "epoch_wall": 0.0})
  ckpt.close()
  return workdir, config, exp, state


def test_cli_scores_a_run_checkpoint(tiny_run):
  workdir, config, exp, state = tiny_run
  record = evaluate.run(evaluate.EvalArgs(
      workdir=str(workdir), num_samples=300, num_reference=1000,
      metrics="mnist_score,classifier_fd"))
  assert record["step"] == 8 and record["epoch"] == 2 and record["num_samples"] == 300
  assert record["reference"] == "mnist_train" and record["generation_batch_size"] == 100
  saved = json.loads((workdir / "eval" / "metrics_8.json").read_text())
  assert saved["metrics"] == record["metrics"]
  lines = (workdir / "eval" / "metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[-1])["metrics"] == record["metrics"]
  assert list((workdir / "tensorboard").glob("*.eval"))
  assert not (workdir / "metrics.jsonl").exists()   # the loop's log is left alone
  # The samples are the restored generator's: same numbers from the in-memory state.
  samples = evaluate.generate_samples(exp, state, 300, 100, seed=0)
  ext = classifier.ClassifierFeatureExtractor("mnist")
  want = classifier.classifier_score(ext(samples)["logits"])[0]
  assert record["metrics"]["mnist_score"] == pytest.approx(want, rel=1e-6)


def test_scheduled_image_metrics_during_training(shared_data_dir, tmp_path):
  """config.evals.metrics makes a training run write the suite's numbers to metrics.jsonl and
  TensorBoard, at the scheduled epochs (every 2, and the last)."""
  from itgan_jax import experiment
  config = load_config("mnist_ssl", "tiny", **{
      "data.dir": str(shared_data_dir), "num_devices": 1, "log.progress": False,
      "train.num_epochs": 3, "evals.metrics.metrics": ("mnist_score", "classifier_fd", "swd"),
      "evals.metrics.every_epochs": 2, "evals.metrics.num_samples": 256})
  config.evals.metrics.swd_images = 256
  experiment.train(config, str(tmp_path))
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  keys = ("mnist_score", "mnist_score_std", "classifier_fd", "swd_avg", "metrics_time_s")
  assert not any(k in records[0] for k in keys)                      # epoch 1: not scheduled
  for record in records[1:]:                                          # epochs 2 and 3 (last)
    for key in keys:
      assert key in record and np.isfinite(record[key]), key
    assert 1.0 <= record["mnist_score"] <= 10.0 and record["classifier_fd"] > 0
  assert records[1]["mnist_score"] != records[2]["mnist_score"]      # the generator changed
  events = b"".join(p.read_bytes() for p in (tmp_path / "tensorboard").iterdir())
  for key in ("mnist_score", "classifier_fd", "swd_avg"):
    assert key.encode() in events, key


def test_unknown_scheduled_metric_fails_at_build(shared_data_dir):
  from itgan_jax import experiment
  config = load_config("mnist_ssl", "tiny", **{"data.dir": str(shared_data_dir),
                                               "evals.metrics.metrics": ("fdd",)})
  with pytest.raises(ValueError, match="unknown metric"):
    experiment.build(config)


@pytest.mark.parametrize("args,message", [
    (["--samples=mnist_test", "--metrics=bogus"], "unknown metric 'bogus'"),
    (["--samples=missing.npz", "--metrics=swd"], "does not exist"),
])
def test_cli_errors_are_one_clear_line(args, message, shared_data_dir):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from tests.helpers import REPO  # pylint: disable=import-outside-toplevel
  result = subprocess.run([sys.executable, "-m", "itgan_jax.evaluate", *args,
                           f"--data_dir={shared_data_dir}"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 1
  lines = [l for l in result.stderr.strip().splitlines() if "warn" not in l.lower()]
  assert lines == [l for l in lines if l.startswith("error: ")] and len(lines) == 1, result.stderr
  assert message in lines[0]
