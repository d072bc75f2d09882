"""Throughput of the JAX SWD and MS-SSIM metrics vs the NumPy/SciPy references of the official code.

Usage: `python benchmarks/metrics_swd_msssim.py [--quick]` (a few minutes on 2 busy CPU cores);
`--swd_images=2048 --swd_res=32 --swd_only --repeats=1` times SWD on larger (CIFAR-sized) sets.

Both sides run in this process on the same images after a warm-up (jit compilation excluded); each time is
the best of `--repeats` runs. The NumPy side is `tests/reference/*_numpy.py`, written from the official
`tkarras/progressive_growing_of_gans metrics/{sliced_wasserstein,ms_ssim}.py` with the same libraries
(SciPy `ndimage.convolve` pyramid, NumPy sort; SciPy `fftconvolve`), so it runs at the official code's speed.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # for tests.reference

import jax  # noqa: E402
import numpy as np  # noqa: E402

from itgan_jax.metrics import ms_ssim as jax_msssim  # noqa: E402
from itgan_jax.metrics import swd as jax_swd  # noqa: E402
from tests.reference import ms_ssim_numpy as np_msssim  # noqa: E402
from tests.reference import swd_numpy as np_swd  # noqa: E402


def best_times(fns: dict, repeats: int) -> dict[str, float]:
  """Best-of-`repeats` wall time of each function, runs interleaved so all see the same machine load."""
  times = {name: float("inf") for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name] = min(times[name], time.perf_counter() - start)
  return times


def images(n: int, res: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  blocks = np.kron(rng.uniform(0, 255, (n, res // 8, res // 8, 3)), np.ones((1, 8, 8, 1)))
  return np.clip(0.7 * blocks + rng.normal(0, 25, blocks.shape), 0, 255).astype(np.uint8)


def bench_swd(n: int, res: int, repeats: int) -> dict[str, float]:
  a, b = images(n, res, 0), images(n, res, 1)
  a_nchw, b_nchw = (np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in (a, b))
  key = jax.random.PRNGKey(0)
  rng = np.random.default_rng(0)

  jax_desc = lambda: (jax_swd.swd_descriptors(a, key), jax_swd.swd_descriptors(b, key))
  da, db = jax.block_until_ready(jax_desc())  # warm-up / compile
  jax_dist = lambda: jax_swd.sliced_wasserstein_distance(da, db, key, sort_on_host=True)
  xla_dist = lambda: jax_swd.sliced_wasserstein_distance(da, db, key, sort_on_host=False)
  jax.block_until_ready((jax_dist(), xla_dist()))
  np_desc = lambda: (np_swd.descriptors(a_nchw, rng=rng), np_swd.descriptors(b_nchw, rng=rng))
  na, nb = np_desc()
  np_dist = lambda: np_swd.swd(na, nb, rng=rng)

  # Where the distance's time goes: the same matrix products and sorts on both sides (same BLAS-class
  # products; the official sorts (n, 128) projections along axis 0, we sort contiguous rows).
  dirs = [np.asarray(jax_swd.swd_directions(k, 147)) for k in jax.random.split(key, len(da))]
  dirs_rows = [jax.numpy.asarray(d.transpose(0, 2, 1).reshape(-1, d.shape[1])) for d in dirs]
  jax_norm_t = jax.jit(lambda d: jax.numpy.transpose(jax_swd.normalize_descriptors(d)))
  jax_proj_fn = jax.jit(lambda d, x: d @ x)
  jax_proj = lambda: [jax_proj_fn(d, jax_norm_t(x)) for d, x in zip(dirs_rows, da)]
  np_proj = lambda: [[np_swd.normalise(x) @ r for r in d] for d, x in zip(dirs, na)]
  proj_rows = [np.asarray(p) for p in jax_proj()]
  proj_cols = np_proj()
  np_sort_rows = lambda: [np.sort(p, axis=1) for p in proj_rows]
  np_sort_cols = lambda: [[np.sort(p, axis=0) for p in level] for level in proj_cols]
  t = best_times({"jax_desc": jax_desc, "np_desc": np_desc, "jax_dist": jax_dist, "xla_dist": xla_dist,
                  "np_dist": np_dist, "jax_proj": jax_proj, "np_proj": np_proj,
                  "np_sort_rows": np_sort_rows, "np_sort_cols": np_sort_cols}, repeats)
  levels = len(jax_swd.pyramid_resolutions(res))
  print(f"SWD: 2 x {n} images {res}x{res}, {levels} levels, {n * 128} descriptors per level and set, "
        "4 x 128 directions")

  def row(label, tj, tn):
    print(f"  {label:40s} JAX {2 * n / tj:8.1f} img/s   NumPy {2 * n / tn:8.1f} img/s   "
          f"speed-up {tn / tj:5.2f}x")

  row("pyramid + descriptors", t["jax_desc"], t["np_desc"])
  row("distance, NumPy sort via callback", t["jax_dist"], t["np_dist"])
  row("distance, XLA sort (int32 keys)", t["xla_dist"], t["np_dist"])
  row("total (default: NumPy sort on CPU)", t["jax_desc"] + t["jax_dist"], t["np_desc"] + t["np_dist"])
  row("total (pure XLA)", t["jax_desc"] + t["xla_dist"], t["np_desc"] + t["np_dist"])
  print("  the distance's parts (timed on one set, rates for both):")
  row("  normalise + all projections", 2 * t["jax_proj"], 2 * t["np_proj"])
  row("  NumPy sorts: rows (ours) | axis 0 (official)", 2 * t["np_sort_rows"], 2 * t["np_sort_cols"])
  return t


def bench_msssim(n: int, res: int, repeats: int) -> tuple[float, float]:
  x = images(n, res, 2)
  jax_fn = lambda: jax_msssim.ms_ssim_consecutive_pairs(x)
  np_fn = lambda: np_msssim.ms_ssim_consecutive_pairs(x, dtype=np.float32)  # official: float32 images
  jax.block_until_ready(jax_fn())
  t = best_times({"jax": jax_fn, "np": np_fn}, repeats)
  tj, tn = t["jax"], t["np"]
  diff = abs(float(jax_fn()) - np_fn())
  print(f"MS-SSIM {res:4d}x{res:<4d} {n:5d} images   JAX {n / tj:9.1f} img/s   NumPy {n / tn:9.1f} img/s   "
        f"speed-up {tn / tj:5.2f}x   |diff| {diff:.1e}")
  return tj, tn


MSSSIM_SIZES = ((1024, 32), (256, 64), (64, 128))   # (images, side)


def bench_all(swd_images: int, swd_res: int, scale: int, repeats: int, swd_only: bool = False) -> None:
  """SWD on `swd_images // scale` images per set, MS-SSIM at three sizes, then the speed-up summary."""
  t = bench_swd(swd_images // scale, swd_res, repeats)
  if swd_only:
    return
  ms = [bench_msssim(n // scale, res, repeats) for n, res in MSSSIM_SIZES]
  swd_ratio = (t["np_desc"] + t["np_dist"]) / (t["jax_desc"] + t["jax_dist"])
  print(f"speed-up vs NumPy (target >= 5x): SWD descriptors {t['np_desc'] / t['jax_desc']:.1f}x, "
        f"SWD total {swd_ratio:.1f}x (the distance is matmul + sort bound), "
        f"MS-SSIM {min(tn / tj for tj, tn in ms):.1f}x-{max(tn / tj for tj, tn in ms):.1f}x")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="smaller sets (a few seconds)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--swd_images", type=int, default=256, help="SWD: images per set")
  parser.add_argument("--swd_res", type=int, default=64, help="SWD: image side")
  parser.add_argument("--swd_only", action="store_true", help="skip MS-SSIM")
  args = parser.parse_args()
  scale = 4 if args.quick else 1
  print(f"jax {jax.__version__} on {jax.default_backend()} ({os.cpu_count()} CPU cores), "
        f"numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}")
  bench_all(args.swd_images, args.swd_res, scale, args.repeats, args.swd_only)


if __name__ == "__main__":
  main()
