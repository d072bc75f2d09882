"""MetricSuite: metric names, Inception plumbing (fake features), missing weights, SWD/MS-SSIM."""

from __future__ import annotations

import numpy as np
import pytest

from itgan_jax.metrics import ms_ssim, scores
from itgan_jax.metrics import suite as suite_lib


def test_parse_metrics():
  assert suite_lib.parse_metrics("is, fid,ms_ssim,fid") == ("is", "fid", "msssim")
  assert suite_lib.parse_metrics(["MNIST_score"]) == ("mnist_score",)
  with pytest.raises(ValueError, match="unknown metric 'fd'"):
    suite_lib.parse_metrics("fd")
  with pytest.raises(ValueError, match="pass reference images"):
    suite_lib.MetricSuite("fid,mnist_score")


class _FakeInception:
  """Stands in for InceptionFeatureExtractor: deterministic features of the pixel values."""

  def __init__(self):
    self.calls = []
    w = np.random.default_rng(0)
    self.w_pool = w.normal(size=(12, 32))
    self.w_logits = w.normal(size=(32, 1008)) * 0.1

  def require_logits_head(self):
    pass

  def __call__(self, images, outputs):
    self.calls.append((images.shape, tuple(outputs)))
    assert images.shape[-1] == 3 and images.dtype == np.uint8
    x = images.reshape(len(images), -1)[:, :12].astype(np.float64) / 255.0
    pool = np.tanh(x @ self.w_pool) + 1.0
    return {"pool": pool, "logits_unbiased": pool @ self.w_logits}


def test_inception_metrics_plumbing_with_fake_features():
  rng = np.random.default_rng(1)
  real = rng.integers(0, 256, (60, 8, 8, 1), np.uint8)
  fake = rng.integers(0, 128, (40, 8, 8, 1), np.uint8)
  suite = suite_lib.MetricSuite("is,fid,kid", real,
                                options=suite_lib.Options(kid_subsets=5, is_splits=4))
  ext = suite._inception = _FakeInception()
  out = suite(fake)
  f_fake = ext(np.repeat(fake, 3, -1), ("pool", "logits_unbiased"))
  f_real = ext(np.repeat(real, 3, -1), ("pool",))
  assert out["is"] == pytest.approx(scores.inception_score(f_fake["logits_unbiased"], 4)[0])
  mu1, s1 = scores.feature_statistics(f_fake["pool"])
  mu2, s2 = scores.feature_statistics(f_real["pool"])
  assert out["fid"] == pytest.approx(scores.frechet_distance(mu1, s1, mu2, s2))
  # KID subsets shrink to the available 40 samples (recorded), same subsets as the formula.
  assert out["kid_subset_size"] == 40
  assert out["kid"] == pytest.approx(scores.kernel_inception_distance(
      f_fake["pool"], f_real["pool"], num_subsets=5, subset_size=40)[0])
  n_calls = len(ext.calls)
  suite(fake)   # the reference features are computed once per suite
  assert len(ext.calls) == n_calls + 1


def test_missing_inception_weights_say_where_to_put_them(tmp_path):
  real = np.zeros((4, 16, 16, 3), np.uint8)
  suite = suite_lib.MetricSuite("fid", real, options=suite_lib.Options(
      inception_weights=str(tmp_path / "nothing.npz")))
  with pytest.raises(FileNotFoundError, match="Inception weights not found"):
    suite(real)


def _blocks(n, res, seed, channels=3):
  rng = np.random.default_rng(seed)
  x = np.kron(rng.uniform(0, 255, (n, res // 4, res // 4, channels)), np.ones((1, 4, 4, 1)))
  return np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)


def test_swd_and_msssim_in_the_suite():
  real, real2 = _blocks(64, 32, 0), _blocks(64, 32, 1)
  noise = np.random.default_rng(2).integers(0, 256, (64, 32, 32, 3), np.uint8)
  suite = suite_lib.MetricSuite("swd,msssim", real, options=suite_lib.Options(swd_images=64))
  same, other = suite(real2), suite(noise)
  assert set(same) == {"swd_32", "swd_16", "swd_avg", "msssim"}
  assert same["swd_avg"] == pytest.approx((same["swd_32"] + same["swd_16"]) / 2, rel=1e-6)
  assert other["swd_avg"] > 1.3 * same["swd_avg"]   # 46 vs 27 here
  np.testing.assert_allclose(same["msssim"], float(ms_ssim.ms_ssim_consecutive_pairs(real2)),
                             rtol=1e-5)
  # MNIST-sized images: one SWD level, MS-SSIM on the zero-padded 32x32 images (recorded).
  digits = _blocks(32, 28, 3, channels=1)
  out = suite_lib.MetricSuite("swd,msssim", _blocks(32, 28, 4, channels=1),
                              options=suite_lib.Options(swd_images=32))(digits)
  assert set(out) == {"swd_28", "swd_avg", "msssim", "msssim_padded_to"}
  assert out["msssim_padded_to"] == 32
  padded = np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0)))
  np.testing.assert_allclose(out["msssim"], float(ms_ssim.ms_ssim_consecutive_pairs(padded)),
                             rtol=1e-5)


class _FakeClassifier:
  """Stands in for ClassifierFeatureExtractor: logits and penultimate features of the pixels."""

  def __init__(self):
    self.calls = []
    w = np.random.default_rng(3)
    self.w_pen = w.normal(size=(12, 16))
    self.w_logits = w.normal(size=(16, 10))

  def __call__(self, images, outputs=("logits", "penultimate")):
    self.calls.append((images.shape, tuple(outputs)))
    x = images.reshape(len(images), -1)[:, :12].astype(np.float64) / 255.0
    pen = np.tanh(x @ self.w_pen)
    return {"penultimate": pen, "logits": pen @ self.w_logits}


def test_classifier_kid_is_kid_on_the_penultimate_features():
  rng = np.random.default_rng(4)
  real = rng.integers(0, 256, (50, 8, 8, 3), np.uint8)
  fake = rng.integers(0, 100, (30, 8, 8, 3), np.uint8)
  suite = suite_lib.MetricSuite("classifier_fd,classifier_kid", real,
                                options=suite_lib.Options(kid_subsets=4, kid_subset_size=20))
  ext = suite._classifier = _FakeClassifier()
  out = suite(fake)
  f_fake, f_real = ext(fake)["penultimate"], ext(real)["penultimate"]
  # Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 on torch-fidelity's subsets, written out here.
  subsets = np.random.RandomState(2020)
  mmds = []
  for _ in range(4):
    x = f_fake[subsets.choice(30, 20, replace=False)]
    y = f_real[subsets.choice(50, 20, replace=False)]
    k = lambda a, b: (a @ b.T / 16 + 1.0) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmds.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (20 * 19)
                - 2 * kxy.sum() / 400)
  assert out["classifier_kid"] == pytest.approx(np.mean(mmds), rel=1e-9, abs=1e-12)
  assert out["classifier_kid_std"] == pytest.approx(np.std(mmds), rel=1e-9, abs=1e-12)
  assert "classifier_kid_subset_size" not in out and "classifier_fd" in out
  n_calls = len(ext.calls)
  suite(fake)   # the reference's features are computed once for FD and KID together
  assert len(ext.calls) == n_calls + 1
  shrunk = suite_lib.MetricSuite("classifier_kid", real, options=suite_lib.Options(kid_subsets=2))
  shrunk._classifier = _FakeClassifier()
  assert shrunk(fake)["classifier_kid_subset_size"] == 30
  with pytest.raises(ValueError, match="pass reference images"):
    suite_lib.MetricSuite("classifier_kid")
