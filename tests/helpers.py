"""Shared test helpers."""

from __future__ import annotations

import pathlib

import ml_collections

from itgan_jax.config_args import load_config_file

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None, **overrides) -> ml_collections.ConfigDict:
  """Loads `configs/<name>.py:get_config(arg)` and applies dotted overrides ('train.num_epochs')."""
  spec = str(REPO / "configs" / f"{name}.py") + (f":{arg}" if arg else "")
  return load_config_file(spec, **overrides)
