r"""Prints a run's test-error curve, wall time and final numbers from its metrics.jsonl (markdown).

  python experiments/summarize_run.py runs/mnist_ssl_100_seed1 [--every 10]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdir", type=pathlib.Path)
  parser.add_argument("--every", type=int, default=10, help="print every N-th epoch")
  args = parser.parse_args()
  records = [json.loads(l) for l in (args.workdir / "metrics.jsonl").read_text().splitlines() if l]
  if not records:
    raise SystemExit(f"no records in {args.workdir / 'metrics.jsonl'}")
  print("| epoch | test errors (EMA) | test errors (raw) | train err | loss_lab | loss_unl | "
        "loss_gen | s/epoch |")
  print("|---|---|---|---|---|---|---|---|")
  for r in records:
    if r["epoch"] % args.every == 0 or r["epoch"] in (1, records[-1]["epoch"]):
      print(f"| {r['epoch']} | {r.get('test_errors_ema', '')} | {r.get('test_errors_raw', '')} | "
            f"{r['train_err']:.4f} | {r['loss_lab']:.4f} | {r['loss_unl']:.4f} | "
            f"{r['loss_gen']:.3f} | {r['epoch_time_s']:.1f} |")
  times = [r["epoch_time_s"] for r in records]
  last = records[-1]
  print(f"\nepochs done: {last['epoch']}; wall time {sum(times) / 3600:.2f} h "
        f"(median {statistics.median(times):.1f} s/epoch, min {min(times):.1f} s)")
  print(f"last epoch: {last.get('test_errors_ema')} test errors with EMA parameters, "
        f"{last.get('test_errors_raw')} with raw parameters")


if __name__ == "__main__":
  main()
