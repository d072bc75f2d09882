"""A run is bound to the config that wrote its checkpoints.

The config of a run is stored once, as `<workdir>/config.json`, when its first training process
starts without checkpoints, and is never overwritten afterwards. A rerun in a workdir that has
checkpoints compares its config with the stored one:

* keys that change the computation (model, data subset, optimizer, seeds, batch, schedule, ...)
  must be equal, else the resume is refused with the keys, both values and the two ways out
  (rerun as stored, or a new `--workdir`);
* keys that only change when or how the run reports or stops may differ, and the differences are
  logged: `RESUMABLE` below (more epochs, logging, evaluators, checkpoint cadence, where the data
  files are read from, the device count and chunking, which change results at most at rounding
  level: docs/run_safety.md).

A key added after a run started is compared at the value its absence means (`ABSENT_MEANS`), so
runs stored before `config.precision` existed resume with the default precision keys (on CPU the
same computation bit for bit, docs/precision.md).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import ml_collections

FILENAME = "config.json"

# Dotted keys (or prefixes ending in '.') whose change a resume accepts.
RESUMABLE = (
    "train.num_epochs", "train.steps_per_call", "train.xla_cpu_region_copy_analysis",
    "num_devices", "log.", "evals.", "checkpoint.",
    "data.dir", "data.tfds_data_dir", "data.allow_download", "data.source", "data.feeder",
    "precision.matmul",  # how products are computed (e.g. moving a run to a GPU), not the model
)

# Keys added after runs were stored, with the value that means what older runs did: a stored
# config (or a config file) without the key equals one that has it at this value. Applied by
# `differences`, i.e. by every comparison (resume, the table runner).
ABSENT_MEANS = {
    "train.num_seeds": 1,
    "precision.matmul": "highest",
    "precision.compute_dtype": "float32",
    "log.curves_every_epochs": 1,
}


class ConfigMismatchError(ValueError):
  """The config of a rerun differs from the stored config of the run in a computation key."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def as_plain(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as JSON values (tuples become lists), as it is stored."""
  return json.loads(config.to_json_best_effort())


def resumable(key: str) -> bool:
  return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def differences(stored: dict, current: dict) -> dict[str, tuple[Any, Any]]:
  """`{dotted key: (stored value, current value)}` for every key that differs (missing: None;
  the keys of `ABSENT_MEANS` compare at the value their absence means)."""
  a, b = _flatten(complete(stored)), _flatten(complete(current))
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def complete(stored: dict) -> dict:
  """A stored config with every `ABSENT_MEANS` key it lacks added at its value (a copy), so a run
  stored before a key existed rebuilds (evaluation, ensembles) with the code of today."""
  out = json.loads(json.dumps(stored))
  for key, value in ABSENT_MEANS.items():
    *sections, name = key.split(".")
    node = out
    for section in sections:
      node = node.setdefault(section, {})
    node.setdefault(name, value)
  return out


def read(workdir: str | pathlib.Path) -> dict | None:
  """The stored config of the run in `workdir`, or None when there is none."""
  path = pathlib.Path(workdir) / FILENAME
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ConfigMismatchError(
        f"{path} (the config this run's checkpoints were written with) is unreadable: {e}. "
        "Restore it, or start over with a new --workdir") from None


def write(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """Stores `config` as the run's config (atomically)."""
  path = pathlib.Path(workdir) / FILENAME
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(config.to_json_best_effort(indent=2))
  tmp.replace(path)


def check_resume(workdir: str | pathlib.Path, config: ml_collections.ConfigDict
                 ) -> dict[str, tuple[Any, Any]]:
  """Compares `config` with the stored config of the run in `workdir` (which has checkpoints).

  Returns:
    The accepted (`RESUMABLE`) differences, `{key: (stored, current)}`; empty when equal or when
    the run stored no config (runs of earlier releases).

  Raises:
    ConfigMismatchError: a key that changes the computation differs (the message names them).
  """
  stored = read(workdir)
  if stored is None:
    return {}
  diff = differences(stored, as_plain(config))
  refused = {k: v for k, v in diff.items() if not resumable(k)}
  if refused:
    listed = "; ".join(f"{k}: {old!r} in the run, {new!r} now" for k, (old, new) in
                       refused.items())
    raise ConfigMismatchError(
        f"the run in {workdir} was started with another config ({listed}). Resume it with the "
        f"stored values (see {pathlib.Path(workdir) / FILENAME}), or pass a new --workdir to "
        "start a new run with these values")
  return diff
