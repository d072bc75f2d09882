"""Image metrics of the generator during training, through `metrics.suite.MetricSuite`.

Config (`config.evals.<name>`), kind='image_metrics':
  metrics        names of `suite.METRICS`, e.g. ('mnist_score', 'classifier_fd', 'swd', 'msssim');
                 () computes nothing. Inception metrics (is, fid, kid) need the converted
                 Inception weights (`inception_weights`, or $ITGAN_INCEPTION_WEIGHTS).
  every_epochs   schedule (and the last epoch)
  num_samples    generated samples per evaluation (10000)
  reference      'train' or 'test': real images of the run's dataset for FD / SWD / KID
  num_reference  reference images (None: as many as samples; a fixed RandomState(0) subset)
  swd_images, msssim_images, kid_subset_size, ...: optional `suite.Options` fields

The latents come from the fixed key `fold_in(PRNGKey(config.seed), 2)` at every evaluation, so
the curve shows the generator's change, not latent noise; samples are generated in batches of the
training batch size (batch statistics, as the official code samples). The feature extractors and
the reference statistics are built once. Reported keys: those of `MetricSuite` plus
`metrics_time_s`.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from itgan_jax.evaluators.common import (EvalContext, Scheduled, generate_uint8,
                                         latent_generator, positive_int)
from itgan_jax.metrics import suite as suite_lib
from itgan_jax.train.contract import EvalOutput

REFERENCES = ("train", "test")
_OPTION_KEYS = tuple(f.name for f in dataclasses.fields(suite_lib.Options))


def metric_keys(metrics: tuple[str, ...]) -> tuple[str, ...]:
  """The scalar keys the suite reports for `metrics` (per-level SWD keys excluded)."""
  keys = {"is": ("is",), "kid": ("kid",), "swd": ("swd_avg",)}
  return tuple(k for m in metrics for k in keys.get(m, (m,)))


class ImageMetrics(Scheduled):
  """Generates `num_samples` images from fixed latents and scores them with a `MetricSuite`."""

  def __init__(self, name: str, suite: suite_lib.MetricSuite | None, variant, scale: str, *,
               every_epochs: int, num_epochs: int, num_samples: int, batch_size: int,
               rng: jax.Array):
    self.name, self.every_epochs, self.num_epochs = name, every_epochs, num_epochs
    self.suite = suite
    self.keys = metric_keys(suite.metrics) if suite is not None else ()
    self._variant, self._scale = variant, scale
    self._num, self._batch, self._rng = num_samples, batch_size, rng
    self._fn = None

  def prepare(self, mesh) -> None:
    self._fn = latent_generator(self._variant, self._batch, mesh)  # split over the devices

  def due(self, epoch: int) -> bool:
    return self.suite is not None and super().due(epoch)

  def __call__(self, state, epoch: int) -> EvalOutput:
    del epoch
    start = time.perf_counter()
    samples = generate_uint8(self._fn, state, self._rng, self._num, self._scale)
    out = dict(self.suite(samples))
    out["metrics_time_s"] = time.perf_counter() - start
    return EvalOutput(scalars=out)


def _reference_images(dataset, which: str, num: int, name: str) -> np.ndarray:
  """`num` real images (all when fewer), a fixed random subset in dataset order; a streaming
  dataset (image folders) decodes only those (its training images: it has no test split)."""
  if hasattr(dataset, "read"):
    if which != "train":
      raise ValueError(f"config.evals.{name}.reference={which!r}: the streaming dataset "
                       f"{dataset.name!r} has only training images; use 'train'")
    total = dataset.num_train
    if num >= total:
      return dataset.read(np.arange(total))
    return dataset.read(np.sort(np.random.RandomState(0).choice(total, num, replace=False)))
  real = dataset.train_x if which == "train" else dataset.test_x
  if num < len(real):
    real = real[np.sort(np.random.RandomState(0).choice(len(real), num, replace=False))]
  return real


def build(name: str, cfg, context: EvalContext) -> ImageMetrics:
  metrics = suite_lib.parse_metrics(list(cfg.metrics) if not isinstance(cfg.metrics, str)
                                    else cfg.metrics)
  every = positive_int(f"evals.{name}.every_epochs", cfg.every_epochs)
  num = positive_int(f"evals.{name}.num_samples", cfg.num_samples)
  rng = jax.random.fold_in(jax.random.PRNGKey(context.seed), 2)
  common = dict(every_epochs=every, num_epochs=context.num_epochs, num_samples=num,
                batch_size=context.batch_size, rng=rng)
  if not metrics:
    return ImageMetrics(name, None, context.variant, context.scale, **common)
  which = cfg.get("reference", "train")
  if which not in REFERENCES:
    raise ValueError(f"config.evals.{name}.reference={which!r}; use one of {REFERENCES}")
  real = None
  if any(m in suite_lib.NEEDS_REFERENCE for m in metrics):
    if context.dataset is None:
      raise ValueError(f"config.evals.{name}: {metrics} need real images, but the input has no "
                       "in-memory dataset")
    num_ref = positive_int(f"evals.{name}.num_reference", cfg.get("num_reference"),
                           allow_none=True) or num
    real = _reference_images(context.dataset, which, num_ref, name)
  options = {k: cfg[k] for k in _OPTION_KEYS if k in cfg and cfg[k] is not None}
  from itgan_jax.metrics import classifier  # pylint: disable=import-outside-toplevel
  dataset_name = getattr(context.dataset, "name", None)
  suite = suite_lib.MetricSuite(
      metrics, real, options=suite_lib.Options(**options),
      classifier_dataset=dataset_name if dataset_name in classifier.SPECS else None)
  return ImageMetrics(name, suite, context.variant, context.scale, **common)
