r"""Compares runs at equal generator steps and at equal training wall time (markdown tables).

  python experiments/compare_runs.py runs/cifar10_rpgan_small_k12 runs/cifar10_rpgan_small_k0 \
      [--names K=12 K=0] [--metrics classifier_fd,classifier_kid,swd_avg,msssim] [--wall_points 6]

Every run's metrics.jsonl record has the iteration count `step` (one G step per iteration in the
`gan` and `rpgan` variants) and the epoch's training time `epoch_time_s` (evaluators excluded),
so a run's training wall time at an epoch is the running sum. Table 1 lists each metric at the
steps every run evaluated; table 2 at `--wall_points` evenly spaced wall times up to the shortest
run's total, each run's latest evaluation at or before that time (the RP-GAN paper's question:
does one discriminator get worse later in training while the projected ensemble keeps improving;
compare at equal compute, not only at equal steps). With `--grids OUT.png` it also tiles the
runs' sample grids (`<workdir>/samples/epoch_NNNN.png`) at up to `--grid_points` steps that every
run reached: one row per run, one column per step, the last common step always included.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from itgan_jax.train import writers  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_METRICS = "classifier_score,classifier_fd,classifier_kid,swd_avg,msssim"


def load(workdir: pathlib.Path) -> list[dict]:
  """The run's records with `wall_s`, the cumulative training time at the end of each epoch."""
  path = workdir / "metrics.jsonl"
  if not path.exists():
    raise SystemExit(f"{path} does not exist: is {workdir} a run directory?")
  records, wall = [], 0.0
  for line in path.read_text().splitlines():
    if line.strip():
      r = json.loads(line)
      wall += r.get("epoch_time_s", 0.0)
      records.append(dict(r, wall_s=wall))
  if not records:
    raise SystemExit(f"no records in {path}")
  return records


def _fmt(value) -> str:
  return "" if value is None else f"{value:.4g}"


def at_equal_steps(runs: dict[str, list[dict]], metrics: list[str]) -> list[str]:
  """Markdown rows: the steps at which every run evaluated all of `metrics`."""
  evaluated = [{r["step"]: r for r in rs if all(m in r for m in metrics)} for rs in runs.values()]
  steps = sorted(set.intersection(*(set(e) for e in evaluated)))
  head = "| step | " + " | ".join(f"{m} ({name})" for m in metrics for name in runs) + " |"
  lines = [head, "|---|" + "---|" * (len(metrics) * len(runs))]
  for step in steps:
    lines.append(f"| {step} | " + " | ".join(_fmt(e[step][m]) for m in metrics
                                               for e in evaluated) + " |")
  return lines


def at_equal_wall_time(runs: dict[str, list[dict]], metrics: list[str], points: int
                       ) -> list[str]:
  """Markdown rows: at `points` wall times up to the shortest run, each run's latest evaluation
  at or before it (its step in parentheses)."""
  evaluated = {name: [r for r in rs if all(m in r for m in metrics)] for name, rs in runs.items()}
  horizon = min(rs[-1]["wall_s"] for rs in runs.values())
  head = ("| training wall (s) | " + " | ".join(f"{m} ({name})" for m in metrics for name in runs)
          + " | " + " | ".join(f"step ({name})" for name in runs) + " |")
  lines = [head, "|---|" + "---|" * (len(metrics) * len(runs) + len(runs))]
  for i in range(1, points + 1):
    t = horizon * i / points
    latest = {name: ([r for r in rs if r["wall_s"] <= t + 1e-9] or [None])[-1]
              for name, rs in evaluated.items()}
    cells = [_fmt(latest[name][m]) if latest[name] else "" for m in metrics for name in runs]
    steps = [str(latest[name]["step"]) if latest[name] else "" for name in runs]
    lines.append(f"| {t:.0f} | " + " | ".join(cells) + " | " + " | ".join(steps) + " |")
  return lines


def grid_steps(runs: dict[str, list[dict]], workdirs: dict[str, pathlib.Path], points: int
               ) -> list[int]:
  """Up to `points` evenly spaced steps at which every run saved a sample grid (the last one
  always among them)."""
  saved = [{r["step"] for r in rs
            if (workdirs[name] / "samples" / f"epoch_{r['epoch']:04d}.png").exists()}
           for name, rs in runs.items()]
  common = sorted(set.intersection(*saved))
  if len(common) <= points:
    return common
  return [common[round(i * (len(common) - 1) / (points - 1))] for i in range(points)
          ] if points > 1 else common[-1:]


def tile_grids(runs: dict[str, list[dict]], workdirs: dict[str, pathlib.Path], steps: list[int],
               scale: float) -> Image.Image:
  """One row per run of its sample grids at `steps`, captioned with the run's name and step."""
  rows = []
  for name, rs in runs.items():
    epoch_at = {r["step"]: r["epoch"] for r in rs}
    row = []
    for step in steps:
      image = Image.open(workdirs[name] / "samples" / f"epoch_{epoch_at[step]:04d}.png")
      if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.NEAREST)
      row.append((f"{name}, step {step}", image))
    rows.append(row)
  return writers.tile_captioned(rows)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+", type=pathlib.Path)
  parser.add_argument("--names", nargs="*", help="one label per run (default: directory names)")
  parser.add_argument("--metrics", default=DEFAULT_METRICS)
  parser.add_argument("--wall_points", type=int, default=6)
  parser.add_argument("--grids", type=pathlib.Path,
                      help="also write the runs' sample grids at common steps to this PNG")
  parser.add_argument("--grid_points", type=int, default=4, help="columns of --grids")
  parser.add_argument("--grid_scale", type=float, default=1.0, help="resize factor of each grid")
  args = parser.parse_args()
  names = args.names or [w.name for w in args.workdirs]
  if len(names) != len(args.workdirs):
    raise SystemExit(f"--names gives {len(names)} labels for {len(args.workdirs)} runs")
  runs = {name: load(w) for name, w in zip(names, args.workdirs)}
  logged = set.intersection(*(set().union(*rs) for rs in runs.values()))
  metrics = [m for m in args.metrics.split(",") if m in logged]
  if not metrics:
    raise SystemExit(f"none of {args.metrics} was logged by every run")
  for name, rs in runs.items():
    print(f"{name}: {rs[-1]['epoch']} epochs, step {rs[-1]['step']}, training wall "
          f"{rs[-1]['wall_s'] / 3600:.2f} h")
  print("\nAt equal generator steps:\n")
  print("\n".join(at_equal_steps(runs, metrics)))
  print("\nAt equal training wall time:\n")
  print("\n".join(at_equal_wall_time(runs, metrics, args.wall_points)))
  if args.grids:
    workdirs = dict(zip(names, args.workdirs))
    steps = grid_steps(runs, workdirs, args.grid_points)
    if not steps:
      raise SystemExit("--grids: no step at which every run saved a sample grid")
    canvas = tile_grids(runs, workdirs, steps, args.grid_scale)
    args.grids.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.grids, optimize=True)
    print(f"\n{args.grids}: sample grids at steps {steps}, {canvas.width}x{canvas.height}")


if __name__ == "__main__":
  main()
