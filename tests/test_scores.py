"""IS / FID / KID against independent NumPy re-derivations of their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from itgan_jax.metrics import scores


# ------------------------------------------------------------------------------------------------
# Inception score


def _reference_is(logits: np.ndarray, splits: int) -> tuple[float, float]:
  """Salimans et al.: exp(E_x KL(p(y|x) || p(y))) per contiguous split, row by row."""
  n = logits.shape[0]
  vals = []
  for s in range(splits):
    part = logits[s * n // splits:(s + 1) * n // splits].astype(np.float64)
    probs = []
    for row in part:
      e = np.exp(row - row.max())
      probs.append(e / e.sum())
    probs = np.array(probs)
    marginal = probs.mean(axis=0)
    kls = [sum(pi * math.log(pi / qi) for pi, qi in zip(p, marginal) if pi > 0) for p in probs]
    vals.append(math.exp(sum(kls) / len(kls)))
  mean = sum(vals) / len(vals)
  std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
  return mean, std


def test_inception_score_matches_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=3.0, size=(103, 17))  # 103 rows: unequal split sizes
  got = scores.inception_score(logits, splits=10)
  want = _reference_is(logits, 10)
  np.testing.assert_allclose(got, want, rtol=1e-10)


def test_inception_score_one_split_and_probs_input():
  rng = np.random.default_rng(1)
  logits = rng.normal(scale=2.0, size=(40, 9)).astype(np.float32)
  mean, std = scores.inception_score(logits, splits=1)
  np.testing.assert_allclose(mean, _reference_is(logits, 1)[0], rtol=1e-6)
  assert std == 0.0
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  np.testing.assert_allclose(scores.inception_score(probs, splits=4),
                             scores.inception_score(logits, splits=4), rtol=1e-5)
  np.testing.assert_allclose(scores.inception_score(probs, splits=4, from_logits=False),
                             scores.inception_score(logits, splits=4, from_logits=True), rtol=1e-5)


def test_inception_score_uniform_is_one():
  mean, std = scores.inception_score(np.zeros((50, 1008)), splits=10)
  np.testing.assert_allclose(mean, 1.0, rtol=1e-12)
  np.testing.assert_allclose(std, 0.0, atol=1e-12)


def test_inception_score_one_hot_equals_num_classes():
  """Confident predictions spread evenly over C classes in every split: IS = C exactly."""
  c, splits = 7, 5
  probs = np.eye(c)[np.tile(np.arange(c), splits)]
  mean, std = scores.inception_score(probs, splits=splits)  # zeros: 0 log 0 = 0, no NaN
  np.testing.assert_allclose(mean, c, rtol=1e-12)
  assert std < 1e-12


def test_inception_score_shuffle_is_torch_fidelity_permutation():
  rng = np.random.default_rng(2)
  # Sorted rows: in-order splits each see one class only (IS ~ 1), shuffled splits see all.
  probs = np.eye(4)[np.repeat(np.arange(4), 25)] * 0.96 + 0.01
  in_order = scores.inception_score(probs, splits=4)
  shuffled = scores.inception_score(probs, splits=4, shuffle_seed=2020)
  perm = np.random.RandomState(2020).permutation(100)  # torch-fidelity's isc_features_to_metric
  np.testing.assert_allclose(shuffled, scores.inception_score(probs[perm], splits=4), rtol=1e-12)
  assert in_order[0] < 1.2 < shuffled[0]
  logits = rng.normal(size=(30, 5))
  assert scores.inception_score(logits, 3, shuffle_seed=1) != scores.inception_score(logits, 3, 7)


def test_inception_score_bad_input():
  with pytest.raises(ValueError, match="at least one sample per split"):
    scores.inception_score(np.zeros((5, 3)), splits=10)
  with pytest.raises(ValueError, match="2-D"):
    scores.inception_score(np.zeros((5,)))
  with pytest.raises(ValueError, match="NaN"):
    scores.inception_score(np.full((10, 3), np.nan), splits=1)


# ------------------------------------------------------------------------------------------------
# Frechet distance


def _reference_fid(mu1, s1, mu2, s2) -> float:
  """Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2) via symmetric eigendecompositions (no sqrtm)."""
  w, v = np.linalg.eigh(s1)
  root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = root1 @ s2 @ root1
  tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def test_feature_statistics_matches_definition():
  rng = np.random.default_rng(3)
  f = rng.normal(size=(50, 6)).astype(np.float32)
  mu, sigma = scores.feature_statistics(f)
  f64 = f.astype(np.float64)
  want_mu = f64.sum(0) / 50
  centred = f64 - want_mu
  want_sigma = sum(np.outer(r, r) for r in centred) / 49
  np.testing.assert_allclose(mu, want_mu, rtol=1e-12)
  np.testing.assert_allclose(sigma, want_sigma, rtol=1e-10)
  assert mu.dtype == np.float64 and sigma.dtype == np.float64
  with pytest.raises(ValueError, match="at least 2"):
    scores.feature_statistics(f[:1])


def test_frechet_distance_matches_reference():
  rng = np.random.default_rng(4)
  a = rng.normal(size=(200, 10))
  b = rng.normal(size=(300, 10)) @ rng.normal(size=(10, 10)) * 0.5 + 1.0
  mu1, s1 = scores.feature_statistics(a)
  mu2, s2 = scores.feature_statistics(b)
  np.testing.assert_allclose(scores.frechet_distance(mu1, s1, mu2, s2),
                             _reference_fid(mu1, s1, mu2, s2), rtol=1e-8)


def test_frechet_distance_diagonal_closed_form():
  """Diagonal Gaussians: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  want = 1 + 0 + 4 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  np.testing.assert_allclose(scores.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), want,
                             rtol=1e-12)


def test_frechet_distance_identical_sets_is_zero():
  rng = np.random.default_rng(5)
  mu, sigma = scores.feature_statistics(rng.normal(size=(500, 32)))
  fid = scores.frechet_distance(mu, sigma, mu, sigma)
  assert abs(fid) < 1e-8 * np.trace(sigma)


def test_frechet_distance_singular_product_uses_eps_offset(monkeypatch):
  """pytorch-fid: a non-finite sqrtm result triggers sqrtm((S1 + eps I)(S2 + eps I))."""
  real_sqrtm = scipy.linalg.sqrtm
  calls = []

  def fake_sqrtm(m, *args, **kwargs):
    calls.append(m.copy())
    if len(calls) == 1:
      return np.full_like(m, np.nan)
    return real_sqrtm(m, *args, **kwargs)

  monkeypatch.setattr(scores.scipy.linalg, "sqrtm", fake_sqrtm)
  rng = np.random.default_rng(6)
  s1 = np.cov(rng.normal(size=(4, 8)), rowvar=False)  # rank 3: singular
  s2 = np.cov(rng.normal(size=(4, 8)), rowvar=False)
  mu = np.zeros(8)
  with pytest.warns(RuntimeWarning, match="singular product"):
    fid = scores.frechet_distance(mu, s1, mu, s2, eps=1e-3)
  np.testing.assert_allclose(calls[1], (s1 + 1e-3 * np.eye(8)) @ (s2 + 1e-3 * np.eye(8)))
  want = np.trace(s1) + np.trace(s2) - 2 * np.trace(real_sqrtm(calls[1]).real)
  np.testing.assert_allclose(fid, want, rtol=1e-10)


def test_frechet_distance_complex_parts(monkeypatch):
  real_sqrtm = scipy.linalg.sqrtm
  eye = np.eye(3)
  monkeypatch.setattr(scores.scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 1e-5j)
  np.testing.assert_allclose(scores.frechet_distance(np.zeros(3), eye, np.zeros(3), eye), 0,
                             atol=1e-12)  # tiny imaginary part: dropped
  monkeypatch.setattr(scores.scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 0.1j)
  with pytest.raises(ValueError, match="imaginary component"):
    scores.frechet_distance(np.zeros(3), eye, np.zeros(3), eye)


def test_frechet_distance_bad_shapes():
  with pytest.raises(ValueError, match="equal length"):
    scores.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match="covariances"):
    scores.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


# ------------------------------------------------------------------------------------------------
# Kernel Inception distance


def _reference_mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree=3, coef0=1.0, gamma=None) -> float:
  """Binkowski et al. eq. (unbiased MMD^2) with k(a, b) = (gamma a.b + coef0)^degree, pair by pair."""
  m, d = x.shape
  gamma = 1.0 / d if gamma is None else gamma
  k = lambda a, b: (gamma * float(np.dot(a, b)) + coef0) ** degree  # noqa: E731
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_full_subsets_match_reference():
  rng = np.random.default_rng(7)
  f1 = rng.normal(size=(25, 6))
  f2 = rng.normal(size=(25, 6)) + 0.3
  mean, std = scores.kernel_inception_distance(f1, f2, num_subsets=3, subset_size=25)
  np.testing.assert_allclose(mean, _reference_mmd2_unbiased(f1, f2), rtol=1e-9)  # subsets = all
  assert std < 1e-12 * abs(mean)
  mean2, _ = scores.kernel_inception_distance(f1, f2, num_subsets=1, subset_size=25, degree=2,
                                              gamma=0.5, coef0=0.3)
  np.testing.assert_allclose(mean2, _reference_mmd2_unbiased(f1, f2, 2, 0.3, 0.5), rtol=1e-9)


def test_kid_subsets_follow_torch_fidelity_rng():
  """Subset i: RandomState(seed).choice(n1, m, replace=False) then .choice(n2, m, ...), in turn."""
  rng = np.random.default_rng(8)
  f1, f2 = rng.normal(size=(40, 4)), rng.normal(size=(30, 4)) * 1.5
  mean, std = scores.kernel_inception_distance(f1, f2, num_subsets=4, subset_size=10, seed=123)
  sub_rng = np.random.RandomState(123)
  vals = []
  for _ in range(4):
    i1 = sub_rng.choice(40, 10, replace=False)
    i2 = sub_rng.choice(30, 10, replace=False)
    vals.append(_reference_mmd2_unbiased(f1[i1], f2[i2]))
  np.testing.assert_allclose([mean, std], [np.mean(vals), np.std(vals)], rtol=1e-9)


def test_kid_same_distribution_near_zero_and_shift_positive():
  rng = np.random.default_rng(9)
  f1, f2 = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
  mean, std = scores.kernel_inception_distance(f1, f2, num_subsets=50, subset_size=100)
  assert abs(mean) < std  # unbiased: zero in expectation (can be negative)
  shifted, _ = scores.kernel_inception_distance(f1, f2 + 0.5, num_subsets=50, subset_size=100)
  assert shifted > 10 * max(abs(mean), std)


def test_kid_bad_input():
  f = np.zeros((10, 3))
  with pytest.raises(ValueError, match="larger than the number of samples"):
    scores.kernel_inception_distance(f, f, subset_size=11)
  with pytest.raises(ValueError, match="dimensions differ"):
    scores.kernel_inception_distance(f, np.zeros((10, 4)), subset_size=5)
