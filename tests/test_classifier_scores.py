"""Classifier-based scores: formula reuse, checked-in weights on real MNIST, sha256-checked loading."""

from __future__ import annotations

import math
import shutil

import jax
import numpy as np
import pytest

from itgan_jax.metrics import classifier
from itgan_jax.metrics import scores

MNIST_WEIGHTS = classifier.default_weights_path("mnist")
CIFAR10_WEIGHTS = classifier.default_weights_path("cifar10")
CIFAR10_PARAMS = 204_970   # GapClassifier(widths=(32, 64, 96))


# ------------------------------------------------------------------------------------------------
# The formulas are those of scores.py (checked here against independent re-derivations).

def _reference_is(logits: np.ndarray, splits: int) -> tuple[float, float]:
  n = logits.shape[0]
  vals = []
  for s in range(splits):
    part = logits[s * n // splits:(s + 1) * n // splits].astype(np.float64)
    e = np.exp(part - part.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    q = p.mean(axis=0)
    vals.append(math.exp(np.mean([sum(pi * math.log(pi / qi) for pi, qi in zip(row, q) if pi > 0)
                                  for row in p])))
  return float(np.mean(vals)), float(np.std(vals))


def _reference_fd(a: np.ndarray, b: np.ndarray) -> float:
  """||mu_a - mu_b||^2 + Tr(Sa + Sb - 2 (Sa^1/2 Sb Sa^1/2)^1/2), by symmetric eigendecompositions."""
  def psd_sqrt(m):
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  a, b = a.astype(np.float64), b.astype(np.float64)
  sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  ra = psd_sqrt(sa)
  cross = np.trace(psd_sqrt(ra @ sb @ ra))
  return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa) + np.trace(sb) - 2 * cross)


def test_classifier_score_is_the_inception_score_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=4.0, size=(205, 10))
  np.testing.assert_allclose(classifier.classifier_score(logits), _reference_is(logits, 10),
                             rtol=1e-10)
  np.testing.assert_allclose(classifier.classifier_score(logits, splits=3),
                             scores.inception_score(logits, splits=3), rtol=0)
  # Confident, uniformly spread predictions reach the number of classes.
  perfect = np.eye(10)[np.arange(1000) % 10] * 60.0
  assert classifier.classifier_score(perfect)[0] == pytest.approx(10.0, rel=1e-9)


def test_classifier_fd_matches_reference():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(400, 12))
  b = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.3
  np.testing.assert_allclose(classifier.classifier_fd(a, b), _reference_fd(a, b), rtol=1e-6)
  assert abs(classifier.classifier_fd(a, a)) < 1e-8


# ------------------------------------------------------------------------------------------------
# Weight files and the sha256 table.

def test_checked_in_weights_are_registered_and_small():
  table = classifier.read_sha256_table()
  assert MNIST_WEIGHTS.name in table
  assert classifier.sha256_file(MNIST_WEIGHTS) == table[MNIST_WEIGHTS.name]
  assert MNIST_WEIGHTS.stat().st_size < 1_000_000
  params, meta = classifier.load_weights("mnist")
  assert meta["dataset"] == "mnist" and meta["test_accuracy"] >= 0.99
  assert jax.tree.structure(params) == jax.tree.structure(
      jax.tree.map(np.asarray, classifier.init_params("mnist")))


def test_cifar10_spec_weight_file_is_under_one_megabyte(tmp_path):
  params = jax.tree.map(np.asarray, classifier.init_params("cifar10", seed=0))
  assert sum(np.size(v) for v in jax.tree.leaves(params)) == CIFAR10_PARAMS
  path = tmp_path / "cifar10_classifier.npz"
  classifier.save_weights(params, {"dataset": "cifar10", "test_accuracy": 0.1}, path)
  assert path.stat().st_size < 1_000_000
  loaded, meta = classifier.load_weights("cifar10", path, verify=False)
  assert meta["dataset"] == "cifar10"
  out = classifier.SPECS["cifar10"]["module"].apply(
      {"params": loaded}, np.zeros((2, 32, 32, 3), np.uint8))
  assert out["logits"].shape == (2, 10) and out["penultimate"].shape == (2, 96)


def _require_registered_cifar10_weights():
  """The cifar10 weights are committed and registered: never skipped, a missing line fails."""
  assert CIFAR10_WEIGHTS.name in classifier.read_sha256_table(), classifier.SHA256_TABLE


def test_checked_in_cifar10_weights_are_registered_and_small():
  _require_registered_cifar10_weights()
  table = classifier.read_sha256_table()
  assert classifier.sha256_file(CIFAR10_WEIGHTS) == table[CIFAR10_WEIGHTS.name]
  assert CIFAR10_WEIGHTS.stat().st_size < 1_000_000
  params, meta = classifier.load_weights("cifar10")   # sha256-checked against the table
  assert meta["dataset"] == "cifar10" and meta["num_params"] == CIFAR10_PARAMS
  assert meta["test_accuracy"] == pytest.approx(0.8216)   # RESULTS.md, docs/metrics.md
  assert meta["epochs"] == 24 and meta["seed"] == 0
  assert meta["max_steps"] is None   # a full training run, not a smoke test
  assert jax.tree.structure(params) == jax.tree.structure(
      jax.tree.map(np.asarray, classifier.init_params("cifar10")))


def test_loader_rejects_missing_unknown_and_modified_files(tmp_path):
  with pytest.raises(classifier.WeightsError, match="train_classifier --dataset=mnist"):
    classifier.load_weights("mnist", tmp_path / "mnist_classifier.npz")
  copy = tmp_path / "mine.npz"
  shutil.copy(MNIST_WEIGHTS, copy)
  with pytest.raises(classifier.WeightsError, match="no entry in the sha256 table"):
    classifier.load_weights("mnist", copy)
  table = tmp_path / "SHA256SUMS"
  classifier.write_sha256_entry("mine.npz", classifier.sha256_file(copy), table)
  params, _ = classifier.load_weights("mnist", copy, table=table)   # registered: loads
  assert "logits" in params
  data = bytearray(copy.read_bytes())
  data[len(data) // 2] ^= 0xFF   # flip one byte inside the weights
  copy.write_bytes(bytes(data))
  with pytest.raises(classifier.WeightsError, match="sha256 mismatch"):
    classifier.load_weights("mnist", copy, table=table)
  with pytest.raises(classifier.WeightsError, match="sha256 mismatch"):
    classifier.load_weights("mnist", MNIST_WEIGHTS, expected_sha256="0" * 64)
  with pytest.raises(classifier.WeightsError, match="not 'cifar10'"):
    classifier.load_weights("cifar10", MNIST_WEIGHTS, verify=False)


def test_save_is_deterministic_and_table_roundtrip(tmp_path):
  params = jax.tree.map(np.asarray, classifier.init_params("mnist", seed=3))
  d1 = classifier.save_weights(params, {"dataset": "mnist"}, tmp_path / "a.npz")
  d2 = classifier.save_weights(params, {"dataset": "mnist"}, tmp_path / "b.npz")
  assert d1 == d2 == classifier.sha256_file(tmp_path / "a.npz")
  table = tmp_path / "T"
  classifier.write_sha256_entry("a.npz", d1, table)
  classifier.write_sha256_entry("b.npz", "ab" * 32, table)
  classifier.write_sha256_entry("a.npz", "cd" * 32, table)   # replaces the old line
  assert classifier.read_sha256_table(table) == {"a.npz": "cd" * 32, "b.npz": "ab" * 32}


# ------------------------------------------------------------------------------------------------
# Extractor: data-parallel batching equals one plain apply.

def test_extractor_sharded_batches_equal_plain_apply():
  params = classifier.init_params("mnist", seed=1)
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, size=(37, 28, 28, 1), dtype=np.uint8)
  ext = classifier.ClassifierFeatureExtractor("mnist", params, batch_size=12)
  assert len(ext.devices) == 8 and ext.batch_size == 16
  got = ext(images)
  want = classifier.SPECS["mnist"]["module"].apply({"params": params}, images)
  for key in ("logits", "penultimate"):
    np.testing.assert_allclose(got[key], np.asarray(want[key]), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"\(28, 28, 1\)"):
    ext(np.zeros((2, 32, 32, 3), np.uint8))
  with pytest.raises(TypeError, match="uint8"):
    ext(images.astype(np.float32))


# ------------------------------------------------------------------------------------------------
# Real data (../shared/data).

@pytest.fixture(scope="module")
def mnist(shared_data_dir):
  from itgan_jax.data import datasets
  return datasets.load_dataset("mnist", source="files", data_dir=shared_data_dir)


@pytest.fixture(scope="module")
def features(mnist):
  ext = classifier.ClassifierFeatureExtractor("mnist")
  return {"test": ext(mnist.test_x), "train": ext(mnist.train_x[:20000]),
          "noise": ext(np.random.default_rng(0).integers(0, 256, (5000, 28, 28, 1), np.uint8))}


def test_real_mnist_test_set_scores_near_ten(mnist, features):
  logits = features["test"]["logits"]
  assert np.mean(np.argmax(logits, -1) == mnist.test_y) >= 0.99
  mean, std = classifier.classifier_score(logits)
  assert 9.5 < mean <= 10.0 and std < 0.2


def test_classifier_fd_real_vs_real_small_real_vs_noise_large(features):
  fd_real = classifier.classifier_fd(features["test"]["penultimate"],
                                     features["train"]["penultimate"])
  fd_noise = classifier.classifier_fd(features["noise"]["penultimate"],
                                      features["train"]["penultimate"])
  assert fd_real >= 0
  assert fd_noise > 100 * fd_real, (fd_real, fd_noise)


def test_train_classifier_evaluate_only_prints_the_checked_in_accuracy(shared_data_dir):
  """The command RESULTS.md cites for the classifier's test accuracy (99.01%, 99 errors)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  out = subprocess.run(
      [sys.executable, "-m", "itgan_jax.metrics.train_classifier", "--dataset=mnist",
       "--evaluate_only", f"--data_dir={shared_data_dir}"],
      capture_output=True, text=True, timeout=600, check=True,
      env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
  assert "test accuracy 0.9901 (99 errors of 10000); recorded at training: 0.9901" in out.stdout


@pytest.fixture(scope="module")
def cifar10(shared_data_dir):
  if not (shared_data_dir / "cifar10" / "cifar-10-python.tar.gz").exists():
    pytest.skip("shared CIFAR-10 copy not found")
  from itgan_jax.data import datasets
  return datasets.load_dataset("cifar10", source="files", data_dir=shared_data_dir)


def test_checked_in_cifar10_classifier_on_real_images(cifar10):
  """1000 real test images: the accuracy agrees with the recorded one; FD real-real << real-noise."""
  _require_registered_cifar10_weights()
  ext = classifier.ClassifierFeatureExtractor("cifar10")
  test = ext(cifar10.test_x[:1000])
  train = ext(cifar10.train_x[:2000], outputs=("penultimate",))
  noise = ext(np.random.default_rng(0).integers(0, 256, (1000, 32, 32, 3), np.uint8),
              outputs=("penultimate",))
  acc = np.mean(np.argmax(test["logits"], -1) == cifar10.test_y[:1000])
  assert abs(acc - ext.metadata["test_accuracy"]) < 0.05, (acc, ext.metadata["test_accuracy"])
  mean, _ = classifier.classifier_score(test["logits"])
  assert 3.0 < mean <= 10.0
  fd_real = classifier.classifier_fd(test["penultimate"], train["penultimate"])
  fd_noise = classifier.classifier_fd(noise["penultimate"], train["penultimate"])
  assert 0 <= fd_real and fd_noise > 10 * fd_real, (fd_real, fd_noise)
