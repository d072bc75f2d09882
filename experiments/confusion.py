r"""Which classes a trained semi-supervised run confuses: its discriminator's confusion matrix on
the test set (EMA and raw parameters, classified as the run's `classifier_error` evaluator does),
the errors per true class, and the most frequent (true -> predicted) confusions.

  python experiments/confusion.py runs/table/mnist_ssl_labels100_seed5 \
      [--data_dir=../shared/data] [--member=0 (a vmapped run's seed index)] [--top=8] \
      [--images=DIR] [--indices]

The diagonal's complement equals the run's logged `test_errors_ema` / `test_errors_raw` at the
checkpoint's epoch (the command checks it when the record exists and the checkpoint ends an epoch;
a run stopped mid-epoch has its newest checkpoint between two logged evaluations).

`--images=DIR` also writes what to look at: `labeled.png`, the run's labeled subset (one row per
class, `variants.ssl.labeled_indices`), and `confused_ema.png` / `confused_raw.png`, for each of the
`--top` confusions a captioned grid of (up to 40 of) its misread test images, in test-set order.
`--indices` prints each listed confusion's test-set indices, to compare runs image by image (which
subsets misread the same test digits).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from PIL import Image  # noqa: E402

from itgan_jax import evaluate, table  # noqa: E402
from itgan_jax import experiment as experiment_lib  # noqa: E402
from itgan_jax.evaluators import classifier_error  # noqa: E402
from itgan_jax.train import seed_vmap, writers  # noqa: E402
from itgan_jax.variants import ssl  # noqa: E402

PARAMS = ("ema", "raw")
IMAGES_PER_CONFUSION = 40


def confusion(workdir: str | pathlib.Path, data_dir: str | None = None,
              member: int | None = None) -> dict:
  """{'epoch' (completed epochs), 'step', 'steps_per_epoch', 'seed', 'ema': matrix, 'raw': matrix}
  of the run's newest checkpoint (`seed`: the vmapped member's seed, else None), with what
  `write_images` shows: 'predicted' ({params: test predictions}), 'y' and 'test_x' (the
  classified test labels and images) and 'labeled_x' (the labeled subset's training images, class
  by class)."""
  config, exp, state, step = evaluate.load_run(workdir, data_dir=data_dir)
  seed = None
  if isinstance(state, seed_vmap.SeedStack):
    members = exp.variant.members
    if member is None or not 0 <= member < len(members):
      raise ValueError(f"{workdir} holds {len(members)} vmapped seeds: pass --member=i "
                       f"with 0 <= i < {len(members)}")
    seed = exp.variant.seeds[member]
  elif member is not None:
    raise ValueError(f"--member={member} given, but {workdir} is a single-seed run")
  classifier = classifier_error.TestSetClassifier(config, exp)
  dataset = exp.dataset
  labeled = ssl.labeled_indices(
      config if member is None else experiment_lib.member_config(config, member), dataset)
  out = {"step": step, "epoch": step // exp.steps_per_epoch,
         "steps_per_epoch": exp.steps_per_epoch, "seed": seed, "predicted": {},
         "y": classifier.y, "test_x": dataset.test_x[:len(classifier.y)],
         "labeled_x": dataset.train_x[labeled]}
  for params in PARAMS:
    log_p = classifier.log_probabilities(state, params == "ema", member)
    out["predicted"][params] = np.argmax(log_p, -1)
    out[params] = classifier_error.confusion_matrix(classifier.y, out["predicted"][params],
                                                    log_p.shape[-1])
  return out


def logged_errors(workdir: pathlib.Path, epoch: int, seed: int | None) -> dict:
  """{'ema': n, 'raw': n}: the test errors metrics.jsonl holds for `epoch` (a vmapped `seed`'s)."""
  suffix = "" if seed is None else seed_vmap.per_seed_key("", seed)
  for r in table.read_records(workdir):
    if r.get("epoch") == epoch:
      return {p: r.get(f"test_errors_{p}{suffix}") for p in PARAMS}
  return {}


def _errors(matrix: np.ndarray) -> int:
  """The misclassified count of a confusion matrix (its off-diagonal sum)."""
  return int(matrix.sum() - np.trace(matrix))


def logged_mismatches(result: dict, logged: dict) -> list[str]:
  """Lines for stderr: a warning per parameter set whose errors differ from those `logged` at the
  checkpoint's epoch, or one note that a mid-epoch checkpoint is not compared."""
  if result["step"] % result["steps_per_epoch"]:
    return [f"note: the checkpoint (step {result['step']}) is {_when(result)}, after the last "
            "logged evaluation; its errors are not compared with the logged ones"]
  lines = []
  for params, value in logged.items():
    got = _errors(result[params])
    if value is not None and value != got:
      lines.append(f"warning: {got} {params} errors here, {value} logged at epoch "
                   f"{result['epoch']}")
  return lines


def _when(result: dict) -> str:
  into = result["step"] % result["steps_per_epoch"]
  return (f"epoch {result['epoch']}" if not into
          else f"{into} steps into epoch {result['epoch'] + 1}")


def top_confusions(matrix: np.ndarray, top: int) -> list[tuple[int, int, int]]:
  """The `top` largest off-diagonal counts as (count, true, predicted), largest first, zeros
  dropped."""
  k = matrix.shape[0]
  pairs = sorted(((int(matrix[i, j]), i, j) for i in range(k) for j in range(k) if i != j),
                 reverse=True)[:top]
  return [p for p in pairs if p[0]]


def confused_indices(result: dict, params: str, top: int) -> list[tuple[int, int, np.ndarray]]:
  """For each of the `top` confusions of `params` ('ema' / 'raw'), largest first: (true,
  predicted, the indices in the test set of its misread images, ascending)."""
  predicted = result["predicted"][params]
  return [(i, j, np.flatnonzero((result["y"] == i) & (predicted == j)))
          for _, i, j in top_confusions(result[params], top)]


def _pil(images: np.ndarray, rows: int) -> Image.Image:
  grid = writers.image_grid(images, rows=rows)
  return Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)


def write_images(result: dict, directory: pathlib.Path, top: int) -> list[pathlib.Path]:
  """labeled.png and confused_<params>.png (module docstring) in `directory`; returns the paths."""
  directory.mkdir(parents=True, exist_ok=True)
  k = result["ema"].shape[0]
  paths = [directory / "labeled.png"]
  writers.save_png(paths[0], writers.image_grid(result["labeled_x"], rows=k))
  for params in PARAMS:
    rows = []
    for i, j, misread in confused_indices(result, params, top):
      count, where = len(misread), misread[:IMAGES_PER_CONFUSION]
      rows.append([(f"true {i} read as {j}: {count} test images"
                    + (f" (first {len(where)})" if count > len(where) else ""),
                    _pil(result["test_x"][where], rows=2 if len(where) > 20 else 1))])
    if not rows:
      continue
    path = directory / f"confused_{params}.png"
    writers.tile_captioned(rows).save(path)
    paths.append(path)
  return paths


def format_report(result: dict, top: int, indices: bool = False) -> str:
  """The matrices as Markdown tables and the `top` confusions (with their test indices when
  `indices`)."""
  lines = []
  for params in PARAMS:
    m = result[params]
    k = m.shape[0]
    errors = _errors(m)
    lines += [f"{params} parameters: {errors} test errors of {int(m.sum())} ({_when(result)}, "
              f"step {result['step']}); rows: true class, columns: predicted",
              "", "| true \\ pred | " + " | ".join(map(str, range(k))) + " | errors |",
              "|---" * (k + 2) + "|"]
    for i in range(k):
      lines.append(f"| {i} | " + " | ".join(str(int(v)) for v in m[i]) +
                   f" | {int(m[i].sum() - m[i, i])} |")
    lines += ["", "most frequent confusions (true -> predicted): " + ", ".join(
        f"{i}->{j} {c}" for c, i, j in top_confusions(m, top))]
    if indices:
      lines += [f"test indices of {i}->{j}: {' '.join(map(str, misread))}"
                for i, j, misread in confused_indices(result, params, top)]
    lines.append("")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("--data_dir", default=None, help="replaces the run's config.data.dir")
  parser.add_argument("--member", type=int, default=None, help="a vmapped run's seed index")
  parser.add_argument("--top", type=int, default=8, help="confusions listed (and drawn)")
  parser.add_argument("--images", default=None,
                      help="directory for labeled.png and confused_{ema,raw}.png")
  parser.add_argument("--indices", action="store_true",
                      help="print each listed confusion's test-set indices")
  args = parser.parse_args(argv)
  workdir = pathlib.Path(args.workdir)
  try:
    result = confusion(workdir, args.data_dir, args.member)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(format_report(result, args.top, args.indices))
  if args.images:
    for path in write_images(result, pathlib.Path(args.images), args.top):
      print(f"wrote {path}")
  for line in logged_mismatches(result, logged_errors(workdir, result["epoch"], result["seed"])):
    print(line, file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
