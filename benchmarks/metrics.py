"""Images per second of every evaluation metric on this machine (issue 4), and the SWD / MS-SSIM
speed-ups over the NumPy references of the official code, measured in the same run.

Usage: `python benchmarks/metrics.py [--quick] [--only=inception,swd_msssim]` (several minutes on 2
busy CPU cores; sections: classifier, fid_kid, inception, swd_msssim).

* Inception features (pool + 1008 logits) at 299x299 from 32x32 uint8 inputs (TF1 resize included),
  jitted, batch `--inception_batch` (the metric suite's default 64), with *random* weights (the same
  arithmetic as the real ones) or, with `--inception_weights=FILE.npz`, the converted real weights;
* classifier features (MNIST classifier, checked-in weights if present, else random) at 28x28,
  batch 1000; then the score formulas on those features (classifier score, FD);
* FID formula (2048-d covariances + scipy sqrtm) and KID (2048-d, 1000-image subsets; timed on 10
  subsets, reported per subset and extrapolated to the standard 100);
* SWD and MS-SSIM: `benchmarks/metrics_swd_msssim.py` (JAX vs `tests/reference/*_numpy.py`).
Times are best-of-`--repeats` after a warm-up (compilation excluded). All run on one process with
all local devices (the extractors shard over them; on a plain CPU that is one device).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # for benchmarks / tests

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import metrics_swd_msssim as swd_msssim  # noqa: E402
from itgan_jax.metrics import classifier, inception, scores  # noqa: E402

SECTIONS = ("classifier", "fid_kid", "inception", "swd_msssim")


def best_time(fn, repeats: int) -> float:
  fn()  # warm-up / compile
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return best


def row(label: str, n: int, seconds: float, extra: str = "") -> None:
  print(f"  {label:52s} {n / seconds:10.1f} img/s  ({seconds:.3f} s for {n}){extra}", flush=True)


def bench_inception(n: int, repeats: int, batch_size: int, weights: str | None) -> None:
  if weights is None:
    ext = inception.InceptionFeatureExtractor(inception.init_params(seed=0), batch_size=batch_size)
    which = "random weights"
  else:
    ext = inception.InceptionFeatureExtractor(weights_path=weights, batch_size=batch_size)
    which = pathlib.Path(weights).name
  n = -(-n // ext.batch_size) * ext.batch_size  # whole batches (a partial one is zero-padded)
  x = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), np.uint8)
  t = best_time(lambda: ext(x), repeats)
  row(f"Inception {'+'.join(ext.outputs)}, 32->299, batch {ext.batch_size} ({which})", n, t)


def bench_classifier(n: int, repeats: int) -> None:
  try:
    ext = classifier.ClassifierFeatureExtractor("mnist", batch_size=1000)
    which = "checked-in weights"
  except classifier.WeightsError:
    ext = classifier.ClassifierFeatureExtractor("mnist", classifier.init_params("mnist"),
                                                batch_size=1000)
    which = "random weights"
  x = np.random.default_rng(1).integers(0, 256, (n, 28, 28, 1), np.uint8)
  t = best_time(lambda: ext(x), repeats)
  row(f"MNIST classifier features ({which}), batch 1000", n, t)
  feats = ext(x)
  t_score = best_time(lambda: classifier.classifier_score(feats["logits"]), repeats)
  row("  + classifier score formula (10 splits, float64)", n, t_score)
  t_fd = best_time(lambda: classifier.classifier_fd(feats["penultimate"], feats["penultimate"]),
                   repeats)
  row("  + classifier FD formula (64-d, both sets)", 2 * n, t_fd)
  row("MNIST score + classifier FD end to end (samples only)", n, t + t_score + t_fd)


def bench_fid_kid(n: int, repeats: int) -> None:
  rng = np.random.default_rng(2)
  a = np.abs(rng.normal(size=(n, 2048))).astype(np.float32)
  b = np.abs(rng.normal(size=(n, 2048))).astype(np.float32) * 1.1
  t_fid = best_time(lambda: scores.frechet_distance(*scores.feature_statistics(a),
                                                    *scores.feature_statistics(b)), 1)
  row("FID formula (statistics of both sets + sqrtm, 2048-d)", 2 * n, t_fid)
  subsets = 10
  t_kid = best_time(lambda: scores.kernel_inception_distance(a, b, num_subsets=subsets,
                                                             subset_size=1000), 1)
  per = t_kid / subsets
  print(f"  {'KID, 2048-d, subsets of 1000 (float64 kernels)':52s} {2000 / per:10.1f} img/s  "
        f"({per:.3f} s per subset; the standard 100 subsets: {100 * per:.1f} s)", flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="smaller sets")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, from {SECTIONS}")
  parser.add_argument("--inception_images", type=int, default=64)
  parser.add_argument("--inception_batch", type=int, default=64)
  parser.add_argument("--inception_weights", default=None,
                      help="converted Inception .npz (default: random weights)")
  args = parser.parse_args()
  only = [s for s in args.only.split(",") if s]
  unknown = set(only) - set(SECTIONS)
  if unknown:
    parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
  q = 2 if args.quick else 1
  print(f"jax {jax.__version__} on {jax.default_backend()} ({len(jax.local_devices())} device(s), "
        f"{os.cpu_count()} CPU cores), numpy {np.__version__}, load average "
        f"{os.getloadavg()[0]:.2f}", flush=True)
  print("Feature extractors and formulas:")
  if "classifier" in only:
    bench_classifier(10000 // q, args.repeats)
  if "fid_kid" in only:
    bench_fid_kid(5000 // q, args.repeats)
  if "inception" in only:
    bench_inception(args.inception_images // q, args.repeats, args.inception_batch,
                    args.inception_weights)
  if "swd_msssim" not in only:
    return
  print("SWD and MS-SSIM vs the NumPy references (same run):", flush=True)
  swd_msssim.bench_all(256, 64, 2 * q, args.repeats)


if __name__ == "__main__":
  main()
