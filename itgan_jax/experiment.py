"""Assembles an experiment from its config: load the data, look up the variant, let it build itself.

  exp = experiment.build(config)                 # data, models, variant, streams, evaluators
  loop.train_and_evaluate(exp, config, workdir)  # or: experiment.train(config, workdir)

The variant (`config.variant`, a module of `itgan_jax/variants/`) turns its config keys into
objects; the loop and the library modules receive plain values.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import ml_collections

from itgan_jax import variants
from itgan_jax.data import datasets as datasets_lib
from itgan_jax.data import image_folder
from itgan_jax.train import loop
from itgan_jax.train import precision as precision_lib
from itgan_jax.train.contract import Experiment

__all__ = ["Experiment", "build", "train", "load_data", "validate", "num_seeds", "member_config"]


def _positive(config: ml_collections.ConfigDict, dotted: str) -> None:
  node = config
  for part in dotted.split("."):
    node = node[part]
  if isinstance(node, bool) or not isinstance(node, int) or node < 1:
    raise ValueError(f"config.{dotted}={node!r} must be an integer >= 1")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the keys every variant shares (before any data is loaded)."""
  if config.get("variant") not in variants.available():
    raise ValueError(f"config.variant={config.get('variant')!r}; choose one of "
                     f"{variants.available()}")
  _positive(config, "train.batch_size")
  num_seeds(config)
  loop.check_config(config)
  precision_lib.from_config(config)  # config.precision.matmul / compute_dtype


def num_seeds(config: ml_collections.ConfigDict) -> int:
  """`config.train.num_seeds` (1 when the config has no such key), checked."""
  n = config.train.get("num_seeds", 1)
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"config.train.num_seeds={n!r} must be an integer >= 1 (the seeds trained "
                     "as one vmapped program; 1 = one run)")
  return n


def member_config(config: ml_collections.ConfigDict, index: int) -> ml_collections.ConfigDict:
  """Seed `index` of a `train.num_seeds` run: `seed + index` and `data.seed_data + index` (the
  config of the separate run it equals), with `train.num_seeds = 1`."""
  member = copy.deepcopy(config)
  with member.unlocked():
    member.seed = config.seed + index
    if "seed_data" in member.data:
      member.data.seed_data = config.data.seed_data + index
    member.train.num_seeds = 1
  return member


def load_data(data: ml_collections.ConfigDict):
  """The dataset of `config.data` (original files or a prepared tfds copy; clear errors); the
  streaming datasets (`data.image_folder.NAMES`) are decoded on demand by their feeder."""
  if data.name in image_folder.NAMES:
    return image_folder.load(data)
  return datasets_lib.load_dataset(data.name, source=data.source, data_dir=data.dir,
                                   tfds_data_dir=data.get("tfds_data_dir"),
                                   allow_download=data.get("allow_download", False))


def build(config: ml_collections.ConfigDict, dataset=None) -> Experiment:
  """Builds the experiment described by `config` (validated with clear messages); `dataset`:
  the already loaded `config.data` (default: loaded here).

  With `config.train.num_seeds = N > 1`, the N experiments of `member_config(config, i)` are
  built and stacked into one (`train.seed_vmap`: the seeds as a vmapped leading state axis).
  """
  validate(config)
  build_variant = variants.get(config.variant)
  if dataset is None:
    dataset = load_data(config.data)
  n = num_seeds(config)
  if n == 1:
    return build_variant(config, dataset)
  from itgan_jax.train import seed_vmap  # pylint: disable=import-outside-toplevel
  members = [member_config(config, i) for i in range(n)]
  return seed_vmap.stack([build_variant(m, dataset) for m in members], [m.seed for m in members])


def train(config: ml_collections.ConfigDict, workdir: str,
          chunk_callback: Callable[[int], None] | None = None) -> dict[str, Any]:
  """Builds `config`'s experiment and trains it in `workdir` (resuming); returns the last record."""
  return loop.train_and_evaluate(build(config), config, workdir, chunk_callback=chunk_callback)
