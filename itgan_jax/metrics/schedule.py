"""Image metrics scheduled by the training config (`config.eval.metrics`, every N epochs).

Config keys (all optional; absent `eval.metrics` or an empty list disables everything):

  eval.metrics                 e.g. ('mnist_score', 'classifier_fd', 'swd'); names of suite.METRICS
  eval.metrics_every_epochs    compute at epochs that are multiples of this, and at the last epoch
  eval.metrics_num_samples     generated samples per evaluation (default 10000)
  eval.metrics_reference       'train' (default) or 'test': real images of the run's dataset
  eval.metrics_num_reference   reference images (default: as many as samples; a fixed subset)

The training loop calls, at the end of every epoch (host side, after the state is updated):

  record.update(metric_schedule.compute_scheduled_metrics(
      config, exp, state, jax.random.fold_in(root_rng, 2)))

which returns {} at epochs that are not scheduled, else {'mnist_score': ..., ...} (the keys of
`suite.MetricSuite`, plus 'metrics_time_s'). A fixed `rng` gives the same latents at every
evaluation, so the curve shows the generator's change, not latent noise. The feature extractors and
the reference statistics are built once per experiment and reused.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import jax
import ml_collections
import numpy as np

from itgan_jax.data import preprocess
from itgan_jax.metrics import suite as suite_lib

DEFAULT_NUM_SAMPLES = 10000

# id(exp) -> (weak reference to exp, suite, jitted generator); Experiment is not hashable.
_CACHE: dict[int, tuple[weakref.ref, suite_lib.MetricSuite, Any]] = {}


def scheduled_metrics(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The metric names of `config.eval.metrics` (validated), () if none."""
  metrics = config.eval.get("metrics") if "eval" in config else None
  if not metrics:
    return ()
  return suite_lib.parse_metrics(list(metrics) if not isinstance(metrics, str) else metrics)


def is_scheduled(config: ml_collections.ConfigDict, epoch: int) -> bool:
  """Whether metrics run after 1-based `epoch`: multiples of every_epochs, and the last epoch."""
  if not scheduled_metrics(config):
    return False
  every = config.eval.get("metrics_every_epochs") or 1
  if every < 1:
    raise ValueError(f"eval.metrics_every_epochs must be >= 1, got {every}")
  return epoch % every == 0 or epoch == config.train.num_epochs


def _cached(config, exp) -> tuple[suite_lib.MetricSuite, Any]:
  entry = _CACHE.get(id(exp))
  if entry is not None and entry[0]() is exp:
    return entry[1], entry[2]
  for key in [k for k, v in _CACHE.items() if v[0]() is None]:
    del _CACHE[key]
  e = config.eval
  num = e.get("metrics_num_samples") or DEFAULT_NUM_SAMPLES
  which = e.get("metrics_reference") or "train"
  if which not in ("train", "test"):
    raise ValueError(f"eval.metrics_reference={which!r}; use 'train' or 'test'")
  real = exp.feeder.host_arrays["x"] if which == "train" else exp.test_x
  num_ref = e.get("metrics_num_reference") or num
  if num_ref < len(real):
    real = real[np.sort(np.random.RandomState(0).choice(len(real), num_ref, replace=False))]
  from itgan_jax.metrics import classifier  # pylint: disable=import-outside-toplevel
  name = config.data.name
  suite = suite_lib.MetricSuite(scheduled_metrics(config), real,
                                classifier_dataset=name if name in classifier.SPECS else None)
  gen = _generator(exp, config.train.batch_size)
  _CACHE[id(exp)] = (weakref.ref(exp), suite, gen)
  return suite, gen


def _generator(exp, batch_size: int):
  return jax.jit(lambda s, k: exp.variant.generate(s, exp.sample_latent(k, batch_size)))


def generate_uint8(exp, state, rng: jax.Array, num: int, batch_size: int,
                   gen=None) -> np.ndarray:
  """`num` uint8 samples from `exp.variant.generate` in batches (latents from fold_in(rng, i))."""
  gen = gen or _generator(exp, batch_size)
  out = [preprocess.to_uint8(np.asarray(gen(state, jax.random.fold_in(rng, i))), exp.scale)
         for i in range(-(-num // batch_size))]
  return np.concatenate(out)[:num]


def compute_scheduled_metrics(config: ml_collections.ConfigDict, exp, state,
                              rng: jax.Array) -> dict[str, float]:
  """The configured image metrics of `state`'s generator, or {} when this epoch is not scheduled.

  The epoch is `state.step // exp.steps_per_epoch` (1-based count of completed epochs).
  """
  epoch = int(state.step) // exp.steps_per_epoch
  if not is_scheduled(config, epoch):
    return {}
  start = time.perf_counter()
  suite, gen = _cached(config, exp)
  num = config.eval.get("metrics_num_samples") or DEFAULT_NUM_SAMPLES
  samples = generate_uint8(exp, state, rng, num, config.train.batch_size, gen)
  out = suite(samples)
  out["metrics_time_s"] = time.perf_counter() - start
  return out
