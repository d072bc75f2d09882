r"""Reproduces one cell of the Improved-GAN semi-supervised tables: N labeled subsets, their mean
+/- std, the ensemble of their discriminators, printed beside the paper's numbers.

  # train (or resume: the same command) 10 subsets of the 100-label MNIST cell, then aggregate:
  python experiments/table.py --config=configs/mnist_ssl.py --labels=100 --subsets=10 \
      --workdir_root=runs/table --run --config.data.dir=../shared/data --config.log.progress=False
  # the paper-era protocol of the same cell (its number: the raw parameters'):
  python experiments/table.py --config=configs/mnist_ssl.py:prerelease --labels=100 \
      --subsets=10 --workdir_root=runs/table --run --config.data.dir=../shared/data
  # the 10 subsets as ONE vmapped program (one run's wall time where the device has room):
  python experiments/table.py --config=configs/mnist_ssl.py --labels=100 --subsets=10 \
      --workdir_root=runs/table --run --vmap_seeds
  # only subsets 4-6 (a cell split across machines or sessions; the table aggregates all):
  python experiments/table.py --config=configs/mnist_ssl.py --labels=100 --subsets=10 \
      --workdir_root=runs/table --run --train_seeds=4-6 --config.data.dir=../shared/data
  # without --run: only aggregate what exists (unfinished subsets are listed with their epoch):
  python experiments/table.py --config=configs/mnist_ssl.py --labels=100 --subsets=10 \
      --workdir_root=runs/table --markdown=runs/table/mnist.md

Subset i trains in `<root>/<name>_labels<L>_seed<i>` with `seed = data.seed_data = i` (with
--vmap_seeds: all in `<root>/<name>_labels<L>_seeds1-<N>`, `train.num_seeds = N`); `<name>` is
the config file's stem plus its arguments (`mnist_ssl_prerelease`) unless --name is given. Any
--config.* override is passed to every subset; a subset trained with another config is refused.
The cell's summary is written to `<root>/table_<name>_labels<L>.json`, and the table printed holds
every cell summarised under the root (both protocols, all label counts). Numbers and the std used:
itgan_jax/table.py.
"""

from __future__ import annotations

import pathlib
import signal
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from itgan_jax import config_args  # noqa: E402  pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "config file and arguments, e.g. configs/mnist_ssl.py:prerelease "
    "(--labels is added to the arguments)", lock_config=True)
_LABELS = flags.DEFINE_integer("labels", None, "labeled examples (the config's labels=N argument)")
_SUBSETS = flags.DEFINE_integer("subsets", 10, "labeled subsets (seeds 1..N); the paper uses 10")
_ROOT = flags.DEFINE_string("workdir_root", None, "directory holding the cell's runs")
_RUN = flags.DEFINE_bool("run", False, "train or resume the unfinished subsets first")
_VMAP = flags.DEFINE_bool("vmap_seeds", False, "the N subsets as one run with train.num_seeds=N "
                          "(one vmapped program)")
_TRAIN_SEEDS = flags.DEFINE_string(
    "train_seeds", None, "with --run: train only these subsets, e.g. 4 or 4-6,9 (a cell split "
    "across machines or sessions); the table still aggregates every finished subset")
_NAME = flags.DEFINE_string("name", None, "workdir prefix (default: config stem + arguments)")
_NUMBER = flags.DEFINE_enum("number", "auto", ["auto", "ema", "raw"],
                            "the protocol's number (auto: raw for :prerelease, else EMA)")
_ENSEMBLE = flags.DEFINE_bool("ensemble", True, "evaluate the ensemble of the finished subsets")
_MARKDOWN = flags.DEFINE_string("markdown", None, "also write the printed table to this file")
flags.mark_flags_as_required(["config", "workdir_root"])


def _merge_labels(argv: list[str]) -> list[str]:
  """Adds --labels=N to the --config argument string before absl loads the config."""
  labels = None
  for i, arg in enumerate(argv):
    if arg.startswith("--labels="):
      labels = arg.split("=", 1)[1]
    elif arg == "--labels" and i + 1 < len(argv):
      labels = argv[i + 1]
  if labels is None:
    return argv
  from itgan_jax.table import with_labels  # pylint: disable=import-outside-toplevel
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + with_labels(arg.split("=", 1)[1], labels)
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = with_labels(out[i + 1], labels)
  return out


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments: {argv[1:]}", file=sys.stderr)
    sys.exit(2)
  from absl import logging  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from itgan_jax import table  # pylint: disable=import-outside-toplevel
  from itgan_jax.train import loop  # pylint: disable=import-outside-toplevel
  # The aggregation's modules, imported before hours of training: imported at the end, they would
  # come from whatever commit the working tree holds then and may not match the modules already
  # loaded (this broke a session's end-of-run aggregation once).
  from itgan_jax import evaluate  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  spec = _SPEC["config"]
  try:
    cell = table.Cell(
        config=_CONFIG.value, subsets=_SUBSETS.value, root=pathlib.Path(_ROOT.value),
        name=_NAME.value or table.cell_name(spec), vmap=_VMAP.value, spec=spec,
        params=table.protocol_params(spec) if _NUMBER.value == "auto" else _NUMBER.value)
    if _TRAIN_SEEDS.value is not None and not _RUN.value:
      raise ValueError("--train_seeds names the subsets --run trains; add --run")
    seeds = (None if _TRAIN_SEEDS.value is None
             else table.parse_seeds(_TRAIN_SEEDS.value, cell.subsets))
    subsets = table.train(cell, seeds=seeds) if _RUN.value else table.status(cell)
    for s in subsets:
      state = "finished" if s.finished else f"unfinished at epoch {s.epoch}/{s.num_epochs}"
      print(f"subset {s.seed}: {state} ({s.workdir})")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.ERROR)  # orbax's notes on opening checkpoints read-only
    # The cell's data directory (a --config.data.dir override included), not the one each run
    # stored: the runs may have moved machines since.
    ensembles = (table.ensemble(cell, subsets, data_dir=cell.config.data.get("dir"))
                 if _ENSEMBLE.value else None)
    for params, e in (ensembles or {}).items():
      print(f"ensemble of {e['members']} ({params} parameters): {e['errors']} test errors by "
            f"averaged probabilities, {e['errors_log_prob']} by averaged log-probabilities "
            f"(members: {e['member_errors']})")
      if e["member_errors"] != e["logged_errors"]:
        print(f"warning: the {params} test errors recomputed from the checkpoints "
              f"{e['member_errors']} differ from the logged {e['logged_errors']}",
              file=sys.stderr)
    path = table.write_result(cell, table.cell_result(cell, subsets, ensembles))
  except loop.StopRequested as e:
    print(str(e), file=sys.stderr)
    sys.exit(128 + e.signum)
  except KeyboardInterrupt:
    print("interrupted; rerun the same command to resume", file=sys.stderr)
    sys.exit(128 + signal.SIGINT)
  except (ValueError, RuntimeError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  text = table.format_table(table.load_results(cell.root))
  print(f"wrote {path}\n\n{text}")
  if _MARKDOWN.value:
    pathlib.Path(_MARKDOWN.value).write_text(text + "\n")


_SPEC = {"config": ""}  # the --config string as given (with --labels merged), for names


def _parse(argv: list[str]) -> list[str]:
  argv = _merge_labels(argv)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      _SPEC["config"] = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      _SPEC["config"] = argv[i + 1]
  return config_args.parse_flags_or_exit(argv)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
