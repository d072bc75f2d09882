"""Training variants, selected by `config.variant`: the module `itgan_jax/variants/<name>.py`.

Each variant module defines `build(config, dataset) -> train.contract.Experiment`, which
assembles its models, optimizers, batch streams, epoch plan and evaluators. Adding a variant is
adding its module (plus its configs and models): nothing here or in the loop changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

_NOT_VARIANTS = frozenset({"base"})


def available() -> tuple[str, ...]:
  """The names of the variant modules in this package."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                      if m.name not in _NOT_VARIANTS and not m.name.startswith("_")))


def get(name: str) -> Callable:
  """The `build(config, dataset)` function of variant `name`; a clear error for unknown names."""
  if name not in available():
    raise ValueError(f"config.variant={name!r} is not a known variant; choose one of "
                     f"{available()}")
  module = importlib.import_module(f"{__name__}.{name}")
  return module.build
