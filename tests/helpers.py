"""Shared test helpers."""

from __future__ import annotations

import pathlib

import ml_collections
import numpy as np

from itgan_jax.config_args import load_config_file

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None, **overrides) -> ml_collections.ConfigDict:
  """Loads `configs/<name>.py:get_config(arg)` and applies dotted overrides ('train.num_epochs')."""
  spec = str(REPO / "configs" / f"{name}.py") + (f":{arg}" if arg else "")
  return load_config_file(spec, **overrides)


def fake_dataset(name: str, image_shape: tuple[int, int, int], n_train: int, n_test: int):
  """A uint8 random-image `ArrayDataset` with 10 balanced classes (no files needed)."""
  from itgan_jax.data.base import ArrayDataset  # pylint: disable=import-outside-toplevel
  rng = np.random.RandomState(0)
  return ArrayDataset(
      name=name, train_x=rng.randint(0, 256, (n_train,) + image_shape).astype(np.uint8),
      train_y=np.arange(n_train, dtype=np.int32) % 10,
      test_x=rng.randint(0, 256, (n_test,) + image_shape).astype(np.uint8),
      test_y=np.arange(n_test, dtype=np.int32) % 10, num_classes=10)
