"""Inception score, Frechet distance and kernel Inception distance from Inception features (float64).

* IS (Salimans et al. 2016; papers.md A.6, D.4, D.5): `openai/improved-gan inception_score/model.py`
  and torch-fidelity `metric_isc.py`: softmax over the 1008 `logits_unbiased`, `splits` contiguous
  parts, per part exp(mean_i KL(p(y|x_i) || p_part(y))), mean and (population) std over parts.
  The openai code splits in order; torch-fidelity first permutes with
  `np.random.RandomState(2020).permutation(N)` (its default `samples_shuffle=True, rng_seed=2020`),
  which `shuffle_seed=2020` reproduces exactly (NumPy's legacy RNG, no torch involved).
* FID: pytorch-fid `fid_score.py: calculate_frechet_distance` (Dougal Sutherland's stable version):
  ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy's sqrtm; if the product is singular
  (non-finite root) eps*I is added to both covariances; an imaginary part is dropped if its diagonal
  is within 1e-3 of 0, else it is an error. Statistics: mean and `np.cov(rowvar=False)` (ddof 1).
  (torch-fidelity's current `metric_fid.py` uses sum(sqrt(eigvals(S1 S2))).real instead; both are
  Tr sqrtm(S1 S2) up to rounding.)
* KID (Binkowski et al. 2018; torch-fidelity `metric_kid.py`, from MMD-GAN `compute_scores.py`):
  polynomial kernel k(x, y) = (gamma x.y + coef0)^degree, gamma = 1/d by default; per subset the
  unbiased MMD^2 = sum_{i!=j} (k(x_i,x_j) + k(y_i,y_j)) / (m(m-1)) - 2 sum_{i,j} k(x_i,y_j) / m^2;
  `num_subsets` subsets of `subset_size` drawn without replacement as torch-fidelity does
  (`rng = np.random.RandomState(seed)`; per subset `rng.choice(n1, m, replace=False)` then
  `rng.choice(n2, m, replace=False)`), so the same seed (torch-fidelity default 2020) draws the same
  subsets. Differences: we compute the kernels in float64 (torch-fidelity in the features' float32).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.special

TORCH_FIDELITY_SEED = 2020


def _as_2d(x, name: str) -> np.ndarray:
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f"{name} must be 2-D (num_samples, dim), got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contains NaN or inf")
  return x


def _looks_like_probs(x: np.ndarray) -> bool:
  return bool(x.min() >= 0.0 and np.allclose(x.sum(axis=1), 1.0, rtol=0, atol=1e-3))


def inception_score(logits_or_probs, splits: int = 10, shuffle_seed: int | None = None, *,
                    from_logits: bool | None = None) -> tuple[float, float]:
  """(mean, std) over `splits` parts of exp(E_x KL(p(y|x) || p(y))).

  Args:
    logits_or_probs: (N, C) logits (`logits_unbiased` of the Inception net) or class probabilities.
    splits: number of contiguous parts (10 in the paper / openai code / torch-fidelity); part i is
      rows [i*N//splits, (i+1)*N//splits).
    shuffle_seed: None = split in order (openai code); an int permutes the rows first with
      `np.random.RandomState(shuffle_seed).permutation(N)` (2020 = torch-fidelity's default).
    from_logits: True for logits, False for probabilities; None decides: rows that are non-negative
      and sum to 1 (+-1e-3) are probabilities, anything else logits.
  """
  x = _as_2d(logits_or_probs, "logits_or_probs")
  n = x.shape[0]
  if not isinstance(splits, (int, np.integer)) or splits < 1:
    raise ValueError(f"splits must be a positive integer, got {splits!r}")
  if n < splits:
    raise ValueError(f"inception_score needs at least one sample per split: got {n} samples for "
                     f"{splits} splits (use more samples or fewer splits)")
  if shuffle_seed is not None:
    x = x[np.random.RandomState(shuffle_seed).permutation(n)]
  if from_logits is None:
    from_logits = not _looks_like_probs(x)
  if from_logits:
    log_p = x - scipy.special.logsumexp(x, axis=1, keepdims=True)
    p = np.exp(log_p)
  else:
    if x.min() < 0:
      raise ValueError("probabilities must be non-negative (pass from_logits=True for logits)")
    p = x
    with np.errstate(divide="ignore"):
      log_p = np.log(p)
  scores = []
  for i in range(splits):
    lo, hi = i * n // splits, (i + 1) * n // splits
    p_part, log_p_part = p[lo:hi], log_p[lo:hi]
    # p log(p / q) with 0 log 0 = 0 (a class with q = 0 has p = 0 in the whole part).
    with np.errstate(divide="ignore", invalid="ignore"):
      log_q = np.log(p_part.mean(axis=0, keepdims=True))
      kl_terms = np.where(p_part > 0, p_part * (log_p_part - log_q), 0.0)
    scores.append(np.exp(kl_terms.sum(axis=1).mean()))
  return float(np.mean(scores)), float(np.std(scores))


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of (N, d) features in float64: mean and `np.cov(rowvar=False)` (ddof 1)."""
  f = _as_2d(features, "features")
  if f.shape[0] < 2:
    raise ValueError(f"feature_statistics needs at least 2 samples, got {f.shape[0]}")
  return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr sqrtm(sigma1 sigma2), as pytorch-fid."""
  mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or mu1.ndim != 1:
    raise ValueError(f"mean vectors must be 1-D of equal length, got {mu1.shape} and {mu2.shape}")
  d = mu1.shape[0]
  if sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f"covariances must be ({d}, {d}), got {sigma1.shape} and {sigma2.shape}")
  diff = mu1 - mu2
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pytorch-fid calls sqrtm(disp=False): no singularity print
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    warnings.warn(f"fid calculation produces singular product; adding {eps} to diagonal of cov "
                  "estimates", RuntimeWarning, stacklevel=2)
    offset = np.eye(d) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"sqrtm(sigma1 sigma2) has an imaginary component of "
                       f"{np.max(np.abs(covmean.imag))}; the covariances are not valid (positive "
                       "semi-definite) or too ill-conditioned")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float,
                       coef0: float) -> np.ndarray:
  return (x @ y.T * gamma + coef0) ** degree


def _unbiased_mmd2(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
  m = k_xx.shape[0]
  sum_xx = k_xx.sum() - np.trace(k_xx)
  sum_yy = k_yy.sum() - np.trace(k_yy)
  return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(features1, features2, num_subsets: int = 100,
                              subset_size: int = 1000, degree: int = 3,
                              gamma: float | None = None, coef0: float = 1.0,
                              seed: int = TORCH_FIDELITY_SEED) -> tuple[float, float]:
  """(mean, std) over `num_subsets` random subsets of the unbiased polynomial-kernel MMD^2."""
  f1 = _as_2d(features1, "features1")
  f2 = _as_2d(features2, "features2")
  if f1.shape[1] != f2.shape[1]:
    raise ValueError(f"feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
  n1, n2 = f1.shape[0], f2.shape[0]
  if subset_size < 2:
    raise ValueError(f"subset_size must be >= 2 for the unbiased estimator, got {subset_size}")
  if n1 < subset_size or n2 < subset_size:
    raise ValueError(f"KID subset_size {subset_size} is larger than the number of samples "
                     f"(features1: {n1}, features2: {n2}); pass a smaller subset_size")
  if num_subsets < 1:
    raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
  if gamma is None:
    gamma = 1.0 / f1.shape[1]
  rng = np.random.RandomState(seed)
  mmds = np.zeros(num_subsets)
  for i in range(num_subsets):
    x = f1[rng.choice(n1, subset_size, replace=False)]
    y = f2[rng.choice(n2, subset_size, replace=False)]
    mmds[i] = _unbiased_mmd2(_polynomial_kernel(x, x, degree, gamma, coef0),
                             _polynomial_kernel(x, y, degree, gamma, coef0),
                             _polynomial_kernel(y, y, degree, gamma, coef0))
  return float(np.mean(mmds)), float(np.std(mmds))
