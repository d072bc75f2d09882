"""Evaluators scheduled by the config (big_vision style): `config.evals.<name> = {kind, ...}`.

Each entry names an evaluator kind and its settings; the loop runs them, in the config's order,
after every epoch that their `every_epochs` divides and after the last epoch. The kinds:

  classifier_error  test-set errors of a variant's classifier, EMA and raw parameters
                    (the official semi-supervised evaluation)       `classifier_error.py`
  sample_grid       a PNG grid of samples from fixed latents        `sample_grid.py`
  image_metrics     MetricSuite scores of the generator (MNIST / classifier score, classifier FD,
                    SWD, MS-SSIM, KID; IS/FID with Inception weights) `image_metrics.py`

A variant says which kinds it offers (a plain GAN has no classifier); asking for another kind is
a build-time error that names the offered ones.
"""

from __future__ import annotations

from typing import Any, Callable

import ml_collections

from itgan_jax.evaluators import classifier_error, image_metrics, sample_grid
from itgan_jax.evaluators.common import EvalContext

KINDS: dict[str, Callable[[str, ml_collections.ConfigDict, EvalContext], Any]] = {
    "classifier_error": classifier_error.build,
    "sample_grid": sample_grid.build,
    "image_metrics": image_metrics.build,
}

__all__ = ["EvalContext", "KINDS", "build"]


def build(evals: ml_collections.ConfigDict | None, context: EvalContext,
          offered: tuple[str, ...]) -> list[Any]:
  """The evaluators of `config.evals` (in order) for a variant that offers the kinds `offered`."""
  out = []
  for name, cfg in (evals or {}).items():
    kind = cfg.get("kind") if hasattr(cfg, "get") else None
    if kind not in KINDS:
      raise ValueError(f"config.evals.{name}.kind={kind!r} is not one of {sorted(KINDS)}")
    if kind not in offered:
      raise ValueError(f"config.evals.{name}: the {context.variant_name!r} variant offers no "
                       f"{kind!r} evaluator (it offers: {', '.join(offered)}); remove the entry")
    out.append(KINDS[kind](name, cfg, context))
  return out
