"""Assembles an experiment from its config: load the data, look up the variant, let it build itself.

  exp = experiment.build(config)                 # data, models, variant, streams, evaluators
  loop.train_and_evaluate(exp, config, workdir)  # or: experiment.train(config, workdir)

The variant (`config.variant`, a module of `itgan_jax/variants/`) turns its config keys into
objects; the loop and the library modules receive plain values.
"""

from __future__ import annotations

from typing import Any, Callable

import ml_collections

from itgan_jax import variants
from itgan_jax.data import datasets as datasets_lib
from itgan_jax.data import image_folder
from itgan_jax.train import loop
from itgan_jax.train.contract import Experiment

__all__ = ["Experiment", "build", "train", "load_data", "validate"]


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
  loop.check_config(config)


def load_data(data: ml_collections.ConfigDict):
  """The dataset of `config.data` (original files or a prepared tfds copy; clear errors); the
  streaming datasets (`data.image_folder.NAMES`) are decoded on demand by their feeder."""
  if data.name in image_folder.NAMES:
    return image_folder.load(data)
  return datasets_lib.load_dataset(data.name, source=data.source, data_dir=data.dir,
                                   tfds_data_dir=data.get("tfds_data_dir"),
                                   allow_download=data.get("allow_download", False))


def build(config: ml_collections.ConfigDict) -> Experiment:
  """Builds the experiment described by `config` (validated with clear messages)."""
  validate(config)
  build_variant = variants.get(config.variant)
  return build_variant(config, load_data(config.data))


def train(config: ml_collections.ConfigDict, workdir: str,
          chunk_callback: Callable[[int], None] | None = None) -> dict[str, Any]:
  """Builds `config`'s experiment and trains it in `workdir` (resuming); returns the last record."""
  return loop.train_and_evaluate(build(config), config, workdir, chunk_callback=chunk_callback)
