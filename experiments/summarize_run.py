r"""Prints a run's curve, wall time, and its last and best snapshots from metrics.jsonl (markdown).

  python experiments/summarize_run.py runs/mnist_ssl_100_seed1 [--every 10] [--keys a,b,c]

Columns: `--keys`, or by default the test errors and losses of a semi-supervised run, else the
training scalars and image metrics the run logged. The last lines give, for every metric with a
direction (errors, FD, KID, SWD: lower is better; IS and classifier score: higher), its value at
the last epoch and at the best epoch where it was computed (the ProGAN CIFAR figure was the best
of the snapshots; report both).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics

SSL_KEYS = ("test_errors_ema", "test_errors_raw", "train_err", "loss_lab", "loss_unl", "loss_gen")
GAN_KEYS = ("lod", "loss_d", "loss_gen", "wdist", "classifier_score", "classifier_fd",
            "classifier_kid", "swd_avg", "msssim", "is", "fid", "kid")
LOWER_IS_BETTER = ("test_errors", "fd", "fid", "kid", "swd")
HIGHER_IS_BETTER = ("is", "classifier_score", "mnist_score")


def direction(key: str) -> str | None:
  """'min', 'max' or None (no better direction, e.g. MS-SSIM, losses)."""
  if key.endswith("_std"):
    return None
  if key in HIGHER_IS_BETTER:
    return "max"
  if any(key == k or key.startswith(k + "_") or key.endswith("_" + k) for k in LOWER_IS_BETTER):
    return "min"
  return None


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return "" if value is None else str(value)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdir", type=pathlib.Path)
  parser.add_argument("--every", type=int, default=10, help="print every N-th epoch")
  parser.add_argument("--keys", default=None, help="comma-separated columns (default: by run)")
  args = parser.parse_args()
  records = [json.loads(l) for l in (args.workdir / "metrics.jsonl").read_text().splitlines() if l]
  if not records:
    raise SystemExit(f"no records in {args.workdir / 'metrics.jsonl'}")
  logged = set().union(*records)
  if args.keys:
    keys = [k for k in args.keys.split(",") if k]
  else:
    keys = [k for k in (SSL_KEYS if "test_errors_ema" in logged else GAN_KEYS) if k in logged]
  print("| epoch | " + " | ".join(keys) + " | s/epoch |")
  print("|---|" + "---|" * (len(keys) + 1))
  for r in records:
    if r["epoch"] % args.every == 0 or r["epoch"] in (1, records[-1]["epoch"]):
      print(f"| {r['epoch']} | " + " | ".join(_fmt(r.get(k)) for k in keys) +
            f" | {r['epoch_time_s']:.1f} |")
  times = [r["epoch_time_s"] for r in records]
  last = records[-1]
  print(f"\nepochs done: {last['epoch']}; wall time {sum(times) / 3600:.2f} h "
        f"(median {statistics.median(times):.1f} s/epoch, min {min(times):.1f} s)")
  if "test_errors_ema" in logged:
    print(f"last epoch: {last.get('test_errors_ema')} test errors with EMA parameters, "
          f"{last.get('test_errors_raw')} with raw parameters")
  for key in sorted(k for k in logged if direction(k)):
    rows = [r for r in records if key in r]
    best = (min if direction(key) == "min" else max)(rows, key=lambda r: r[key])
    print(f"{key}: last {_fmt(rows[-1][key])} (epoch {rows[-1]['epoch']}), best "
          f"{_fmt(best[key])} (epoch {best['epoch']})")


if __name__ == "__main__":
  main()
