"""Cells of the Improved-GAN semi-supervised tables (papers.md E.1): N labeled subsets per cell,
the mean +/- std of their last-epoch test errors, and the ensemble of their discriminators.

A cell is a config (file + argument string, e.g. `configs/mnist_ssl.py:prerelease,labels=100`).
Its subset i = 1..N is the run with `seed = i` and `data.seed_data = i` (the paper averages over
10 random labeled subsets; the official README reruns with other --seed / --seed_data, papers.md
A.4): in its own workdir `<root>/<name>_labels<L>_seed<i>`, or, with `vmap=True`, as member i of
one run with `train.num_seeds = N` in `<root>/<name>_labels<L>_seeds1-<N>` (train/seed_vmap.py).

Numbers (`summarize`, `ensemble`):
* each finished subset's test errors of its LAST epoch (no test-set model selection, A.4), for the
  EMA and for the raw discriminator parameters;
* their mean and SAMPLE standard deviation (ddof = 1) over the finished subsets. The paper does not
  say which one it reports; the sample one is the usual "mean +/- std of N runs" and is
  sqrt(N / (N - 1)) = 1.054 times the population one for N = 10;
* the ensemble: the N discriminators' class probabilities softmax(logits over the K classes) on
  the test set (deterministic mode), averaged with equal weights; its argmax against the labels.
  One ensemble per cell, so it has no +/- (the paper's ensemble rows do not say what theirs is).
  Also recorded (`errors_log_prob`): the argmax of the averaged LOG-probabilities (the normalised
  geometric mean, a product of experts). The rules differ when members are overconfident: one
  member's probability near 1 outweighs the others' in the arithmetic mean, not in the geometric.
  The table prints the arithmetic rule; `experiments/table.py` prints both.

The protocol's number: the released scripts test the EMA parameters; the MNIST script of the
paper's first version (`configs/mnist_ssl.py:prerelease`) had no EMA, so its number is the raw
parameters' (`protocol_params`). Both are always reported.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pathlib
import statistics
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from itgan_jax.train import run_config

PARAMS = ("ema", "raw")
STD = "sample standard deviation (ddof=1) over the finished subsets"


@dataclasses.dataclass(frozen=True)
class PaperTable:
  """One dataset's rows of Salimans et al. 2016 Tables 1-2 (papers.md E.1).

  `unit` is 'errors' (test errors of 10,000, MNIST) or '%' (test error, CIFAR-10, SVHN);
  `model` / `ensemble` map a label count to (mean, std); `unverified` lists the (row, labels)
  that papers.md marks [mem] (quoted from memory, not cross-checked).
  """
  title: str
  unit: str
  labels: tuple[int, ...]
  model: dict[int, tuple[float, float]]
  ensemble: dict[int, tuple[float, float]]
  unverified: frozenset = frozenset()


PAPER = {
    "mnist": PaperTable(
        "MNIST (permutation invariant): test errors of 10,000", "errors", (20, 50, 100, 200),
        model={20: (1677, 452), 50: (221, 136), 100: (93, 6.5), 200: (90, 4.2)},
        ensemble={20: (1134, 445), 50: (142, 96), 100: (86, 5.6), 200: (81, 4.3)},
        unverified=frozenset({("model", 50), ("ensemble", 20), ("ensemble", 50)})),
    "cifar10": PaperTable(
        "CIFAR-10: test error %", "%", (1000, 2000, 4000, 8000),
        model={1000: (21.83, 2.01), 2000: (19.61, 2.09), 4000: (18.63, 2.32),
               8000: (17.72, 1.82)},
        ensemble={1000: (19.22, 0.54), 2000: (17.25, 0.66), 4000: (15.59, 0.47),
                  8000: (14.87, 0.89)},
        unverified=frozenset({("ensemble", 1000), ("ensemble", 2000), ("ensemble", 8000)})),
    "svhn": PaperTable(
        "SVHN: test error %", "%", (500, 1000, 2000),
        model={500: (18.44, 4.8), 1000: (8.11, 1.3), 2000: (6.16, 0.58)},
        ensemble={1000: (5.88, 1.0)}, unverified=frozenset({("model", 2000)})),
}


# ------------------------------------------------------------------------------------------------
# Cells and their runs.

def with_labels(spec: str, labels: int | None) -> str:
  """`configs/x.py:prerelease` + 100 -> `configs/x.py:prerelease,labels=100` (replacing any
  labels=... already there); `labels=None` leaves `spec` as it is."""
  if labels is None:
    return spec
  path, _, arg = spec.partition(":")
  items = [a for a in arg.split(",") if a and a.partition("=")[0].strip() != "labels"]
  return f"{path}:{','.join(items + [f'labels={labels}'])}"


def cell_name(spec: str) -> str:
  """The workdir prefix of a config spec: the file's stem and its arguments other than labels,
  e.g. `configs/mnist_ssl.py:prerelease,labels=100` -> `mnist_ssl_prerelease`."""
  path, _, arg = spec.partition(":")
  parts = [pathlib.Path(path).stem]
  for item in filter(None, arg.split(",")):
    key, _, value = item.partition("=")
    if key.strip() != "labels":
      parts.append(key.strip() + value.strip())
  return "_".join(parts)


def protocol_params(spec: str) -> str:
  """'raw' for the paper-era MNIST protocol (`:prerelease`, a script without EMA), else 'ema'."""
  _, _, arg = spec.partition(":")
  return "raw" if "prerelease" in [a.partition("=")[0].strip() for a in arg.split(",")] else "ema"


def seed_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """The config of subset `seed`: `seed = data.seed_data = seed`."""
  out = copy.deepcopy(config)
  with out.unlocked():
    out.seed = seed
    if "seed_data" in out.data:
      out.data.seed_data = seed
  return out


@dataclasses.dataclass
class Cell:
  """A table cell: `config` (labels and overrides applied; its seeds are replaced), N subsets
  under `root`. `name` prefixes the workdirs; `params`: the protocol's number ('ema' / 'raw')."""
  config: ml_collections.ConfigDict
  subsets: int
  root: pathlib.Path
  name: str
  params: str = "ema"
  vmap: bool = False
  spec: str = ""

  def __post_init__(self):
    self.root = pathlib.Path(self.root)
    if isinstance(self.subsets, bool) or not isinstance(self.subsets, int) or self.subsets < 1:
      raise ValueError(f"--subsets={self.subsets!r} must be an integer >= 1")
    if self.params not in PARAMS:
      raise ValueError(f"params={self.params!r} must be one of {PARAMS}")
    if self.vmap and self.subsets < 2:
      raise ValueError("training the subsets as one vmapped program needs --subsets >= 2")

  @property
  def labels(self) -> int | None:
    return self.config.data.get("num_labeled")

  @property
  def dataset(self) -> str:
    return self.config.data.name

  @property
  def seeds(self) -> tuple[int, ...]:
    return tuple(range(1, self.subsets + 1))

  def workdir(self, seed: int) -> pathlib.Path:
    return self.root / f"{self.name}_labels{self.labels}_seed{seed}"

  @property
  def vmapped_workdir(self) -> pathlib.Path:
    return self.root / f"{self.name}_labels{self.labels}_seeds1-{self.subsets}"

  def runs(self) -> list[tuple[pathlib.Path, ml_collections.ConfigDict, tuple[int, ...]]]:
    """(workdir, config, seeds it trains) of each run of the cell."""
    if not self.vmap:
      return [(self.workdir(s), seed_config(self.config, s), (s,)) for s in self.seeds]
    config = seed_config(self.config, 1)
    with config.unlocked():
      config.train.num_seeds = self.subsets
    return [(self.vmapped_workdir, config, self.seeds)]

  @property
  def summary_path(self) -> pathlib.Path:
    return self.root / f"table_{self.name}_labels{self.labels}.json"


@dataclasses.dataclass
class Subset:
  """One labeled subset's state: its run's workdir, last logged epoch and record.

  `member`: its index in a vmapped run (None: its own run); its values are the record's
  `<key>_seed<seed>` there."""
  seed: int
  workdir: pathlib.Path
  epoch: int
  num_epochs: int
  record: dict | None
  member: int | None = None

  @property
  def finished(self) -> bool:
    return self.epoch == self.num_epochs

  def value(self, key: str):
    if self.record is None:
      return None
    return self.record.get(key if self.member is None else f"{key}_seed{self.seed}")


def read_records(workdir: pathlib.Path) -> list[dict]:
  """The run's metrics.jsonl records (a torn last line dropped, as the loop does)."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  lines = path.read_text().split("\n")
  out = []
  for number, line in enumerate(lines, 1):
    if line.strip():
      try:
        out.append(json.loads(line))
      except ValueError:
        if number != len(lines):
          raise ValueError(f"{path}, line {number}, is not a JSON record; repair or delete that "
                           "line") from None
  return out


def check_run_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """Refuses a run whose stored config differs from the cell's in a computation key (as a
  resume would); keys that only change reporting (run_config.RESUMABLE) may differ."""
  stored = run_config.read(workdir)
  if stored is None:
    return
  diff = run_config.differences(stored, run_config.as_plain(config))
  refused = {k: v for k, v in diff.items() if not run_config.resumable(k)}
  if refused:
    listed = "; ".join(f"{k}: {old!r} in the run, {new!r} in the cell" for k, (old, new)
                       in refused.items())
    raise run_config.ConfigMismatchError(
        f"{workdir} was trained with another config than this cell's ({listed}); pass the "
        "config and --config.* overrides it was trained with, or another --workdir_root")


def status(cell: Cell) -> list[Subset]:
  """Every subset of the cell with its last logged epoch (0: not started). Raises
  FileNotFoundError for a missing root, ConfigMismatchError for a run of another config."""
  if not cell.root.is_dir():
    raise FileNotFoundError(f"--workdir_root={cell.root} does not exist, so there is nothing to "
                            "aggregate; pass --run to train the subsets there, or the root "
                            "that holds them")
  num_epochs = cell.config.train.num_epochs
  out = []
  for workdir, config, seeds in cell.runs():
    check_run_config(workdir, config)
    records = read_records(workdir)
    last = records[-1] if records else None
    epoch = int(last["epoch"]) if last else 0
    if epoch > num_epochs:
      raise ValueError(f"{workdir} has trained {epoch} epochs, more than the cell's "
                       f"train.num_epochs={num_epochs}; pass --config.train.num_epochs={epoch}")
    for i, seed in enumerate(seeds):
      out.append(Subset(seed, workdir, epoch, num_epochs, last,
                        member=i if cell.vmap else None))
  return out


def parse_seeds(text: str, subsets: int) -> tuple[int, ...]:
  """`'4'`, `'4-6,9'` -> the sorted subsets (seeds) named, each in 1..`subsets`. Raises
  ValueError for anything else."""
  seeds = set()
  for item in text.split(","):
    first, dash, last = item.strip().partition("-")
    try:
      low = int(first)
      high = int(last) if dash else low
    except ValueError:
      raise ValueError(f"--train_seeds={text!r}: {item.strip()!r} is not a subset (i) or a range "
                       "(i-j); e.g. --train_seeds=4 or --train_seeds=4-6,9") from None
    if not 1 <= low <= high <= subsets:
      raise ValueError(f"--train_seeds={text!r}: {item.strip()!r} is not within the cell's "
                       f"subsets 1-{subsets} (--subsets={subsets})")
    seeds.update(range(low, high + 1))
  return tuple(sorted(seeds))


def train(cell: Cell, dataset=None, chunk_callback: Callable[[int], None] | None = None,
          seeds: Sequence[int] | None = None) -> list[Subset]:
  """Trains (or resumes) every unfinished run of the cell, one after the other; a finished run
  is not touched. `seeds`: only these subsets' runs (to split a cell across machines or
  sessions; a vmapped cell is one run, so it takes all or none). Returns the status of every
  subset afterwards."""
  from itgan_jax import experiment  # pylint: disable=import-outside-toplevel
  from itgan_jax.train import loop  # pylint: disable=import-outside-toplevel
  wanted = set(cell.seeds if seeds is None else seeds)
  if cell.vmap and wanted != set(cell.seeds):
    raise ValueError(f"a vmapped cell trains its {cell.subsets} subsets as one run, so it "
                     f"cannot train only subsets {list(seeds)}; drop --train_seeds or "
                     "--vmap_seeds")
  cell.root.mkdir(parents=True, exist_ok=True)
  subsets = status(cell)  # refuses runs of another config before anything trains
  done = {s.workdir for s in subsets if s.finished}
  for workdir, config, run_seeds in cell.runs():
    if workdir in done or not wanted.intersection(run_seeds):
      continue
    if dataset is None:
      dataset = experiment.load_data(config.data)
    loop.train_and_evaluate(experiment.build(config, dataset), config, str(workdir),
                            chunk_callback=chunk_callback)
  return status(cell)


# ------------------------------------------------------------------------------------------------
# Numbers.

def mean_std(values: Sequence[float]) -> dict[str, Any]:
  """{mean, std (sample, ddof=1; None for fewer than 2 values), n, values}."""
  values = [float(v) for v in values]
  return {"mean": statistics.fmean(values) if values else None,
          "std": statistics.stdev(values) if len(values) > 1 else None,
          "n": len(values), "values": values}


def summarize(subsets: Sequence[Subset]) -> dict[str, Any]:
  """Mean +/- std of the finished subsets' last-epoch test errors, per parameter set: counts
  (`errors`) and fractions (`err`)."""
  finished = [s for s in subsets if s.finished]
  out = {}
  for params in PARAMS:
    out[params] = {
        "errors": mean_std([s.value(f"test_errors_{params}") for s in finished]),
        "err": mean_std([s.value(f"test_err_{params}") for s in finished])}
  return out


def ensemble(cell: Cell, subsets: Sequence[Subset], dataset=None, data_dir: str | None = None,
             return_probabilities: bool = False) -> dict[str, Any]:
  """The ensemble of the finished subsets' discriminators (module docstring), per parameter set:
  {errors, err, errors_log_prob, members, member_errors}; `member_errors` are recomputed from the
  checkpoints and checked against the logged last-epoch errors (`logged_errors`). With
  `return_probabilities`, also the averaged `probabilities` and `log_probabilities` (n, K)."""
  from itgan_jax import evaluate  # pylint: disable=import-outside-toplevel
  from itgan_jax.evaluators import classifier_error  # pylint: disable=import-outside-toplevel
  finished = [s for s in subsets if s.finished]
  if not finished:
    return {}
  sums = {p: 0.0 for p in PARAMS}
  log_sums = {p: 0.0 for p in PARAMS}
  member_errors = {p: [] for p in PARAMS}
  classifier = None
  loaded: dict[pathlib.Path, Any] = {}
  for subset in finished:
    if subset.workdir not in loaded:
      loaded.clear()  # one run's state in memory at a time
      loaded[subset.workdir] = evaluate.load_run(subset.workdir, step=int(subset.record["step"]),
                                                 dataset=dataset, data_dir=data_dir)
    _, exp, state, _ = loaded[subset.workdir]
    if classifier is None:
      classifier = classifier_error.TestSetClassifier(cell.config, exp)
      dataset = exp.dataset
    for params in PARAMS:
      log_p = classifier.log_probabilities(state, params == "ema", subset.member)
      member_errors[params].append(int(np.sum(np.argmax(log_p, -1) != classifier.y)))
      sums[params] = sums[params] + np.exp(log_p)
      log_sums[params] = log_sums[params] + log_p
  y = classifier.y
  out = {}
  for params in PARAMS:
    mean, log_mean = sums[params] / len(finished), log_sums[params] / len(finished)
    errors = int(np.sum(np.argmax(mean, -1) != y))
    out[params] = {"errors": errors, "err": errors / len(y),
                   "errors_log_prob": int(np.sum(np.argmax(log_mean, -1) != y)),
                   "members": len(finished),
                   "seeds": [s.seed for s in finished],
                   "member_errors": member_errors[params],
                   "logged_errors": [s.value(f"test_errors_{params}") for s in finished],
                   "test_examples": int(len(y))}
    if return_probabilities:
      out[params]["probabilities"] = mean
      out[params]["log_probabilities"] = log_mean
  return out


def cell_result(cell: Cell, subsets: Sequence[Subset], ensembles: dict | None) -> dict[str, Any]:
  """The cell's JSON summary (what `format_table` prints)."""
  return {
      "dataset": cell.dataset, "labels": cell.labels, "name": cell.name, "spec": cell.spec,
      "params": cell.params, "subsets": cell.subsets, "num_epochs": cell.config.train.num_epochs,
      "vmap": cell.vmap, "std": STD,
      "finished": [s.seed for s in subsets if s.finished],
      "unfinished": {str(s.seed): s.epoch for s in subsets if not s.finished},
      "workdirs": {str(s.seed): str(s.workdir) for s in subsets},
      "model": summarize(subsets), "ensemble": ensembles or {}}


def write_result(cell: Cell, result: dict) -> pathlib.Path:
  cell.summary_path.write_text(json.dumps(result, indent=2) + "\n")
  return cell.summary_path


def load_results(root: pathlib.Path) -> list[dict]:
  """Every cell summary written under `root` (table_*.json)."""
  return [json.loads(p.read_text()) for p in sorted(pathlib.Path(root).glob("table_*.json"))]


# ------------------------------------------------------------------------------------------------
# The paper's layout.

def _fmt(value: float | None, unit: str) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  return f"{value:.1f}" if unit == "errors" else f"{value:.2f}"


def _ours(summary: dict, unit: str) -> tuple[float | None, float | None]:
  """(mean, std) in the table's unit: test errors (MNIST) or percent."""
  key = "errors" if unit == "errors" else "err"
  scale = 1.0 if unit == "errors" else 100.0
  mean, std = summary[key]["mean"], summary[key]["std"]
  return (None if mean is None else mean * scale), (None if std is None else std * scale)


def _paper(pair, unverified: bool) -> str:
  return "" if pair is None else f"{pair[0]:g} ± {pair[1]:g}" + (" †" if unverified else "")


def format_table(results: Sequence[dict]) -> str:
  """Markdown tables in the paper's layout (Table 1 / 2 of Salimans et al. 2016), one per
  dataset: the paper's row, then ours per config and parameter set (the protocol's first), for
  "Our model" and for the ensemble."""
  lines = []
  for dataset in sorted({r["dataset"] for r in results}):
    cells = [r for r in results if r["dataset"] == dataset]
    paper = PAPER.get(dataset)
    unit = paper.unit if paper else "%"
    labels = sorted(set(paper.labels if paper else ()) | {r["labels"] for r in cells})
    title = paper.title if paper else f"{dataset}: test error % (no paper numbers)"
    lines += [f"{title}; ours: mean ± sample std over the finished subsets of each cell "
              "[finished/asked when not all], last epoch", "",
              "| model | " + " | ".join(str(l) for l in labels) + " |",
              "|---|" + "---|" * len(labels)]
    names = list(dict.fromkeys(r["name"] for r in cells))

    def row(label, texts):
      lines.append(f"| {label} | " + " | ".join(texts.get(l, "") for l in labels) + " |")

    for kind in ("model", "ensemble"):
      if paper:
        head = "Our model" if kind == "model" else "Ensemble of 10 of our models"
        row(f"{head} (paper)",
            {l: _paper(getattr(paper, kind).get(l), (kind, l) in paper.unverified)
             for l in labels})
      for name in names:
        mine = [r for r in cells if r["name"] == name]
        order = [mine[0]["params"]] + [p for p in PARAMS if p != mine[0]["params"]]
        for params in order:
          texts = {}
          for r in mine:
            if kind == "model":
              mean, std = _ours(r["model"][params], unit)
              n = r["model"][params]["errors"]["n"]
              if not n:
                texts[r["labels"]] = f"[0/{r['subsets']}]"
                continue
              text = _fmt(mean, unit) + (f" ± {_fmt(std, unit)}" if std is not None else "")
              texts[r["labels"]] = text + (f" [{n}/{r['subsets']}]" if n < r["subsets"] else "")
            elif r["ensemble"].get(params):
              e = r["ensemble"][params]
              value = e["errors"] if unit == "errors" else 100 * e["err"]
              members = f"{e['members']} model" + ("s" if e["members"] != 1 else "")
              texts[r["labels"]] = (f"{value}" if unit == "errors" else f"{value:.2f}") + (
                  f" [{members}]")
          what = "EMA" if params == "ema" else "raw"
          mark = ", the protocol's number" if params == mine[0]["params"] else ""
          head = "Our model" if kind == "model" else "Ensemble"
          row(f"{head}: ours, {name}, {what} D{mark}", texts)
    lines += ["", "† papers.md quotes this number from memory (not cross-checked).", ""]
  return "\n".join(lines)
