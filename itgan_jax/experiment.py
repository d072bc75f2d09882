"""Assembles an experiment from its config: data, models, optimizers and the training variant.

This is the only place where config keys are turned into objects; the loop, the variants and the
library modules receive plain values.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax

from itgan_jax import models
from itgan_jax.data import datasets as datasets_lib
from itgan_jax.data import ssl as ssl_data
from itgan_jax.losses import gan as gan_losses
from itgan_jax.models.latent import sample_latent
from itgan_jax.optim import schedules
from itgan_jax.train import input_pipeline
from itgan_jax.variants.ssl import SemiSupervisedGAN

VARIANTS = ("ssl",)


@dataclasses.dataclass
class Experiment:
  """Everything the loop needs, built from one config."""
  variant: Any
  feeder: input_pipeline.DeviceFeeder
  epoch_plan: Callable[[int], dict[str, np.ndarray]]
  steps_per_epoch: int
  x_init: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  scale: str
  sample_latent: Callable[[jax.Array, int], jax.Array]
  curve_keys: tuple[str, ...]


def build_optimizer(optim: ml_collections.ConfigDict, historical_weight: float = 0.0
                    ) -> optax.GradientTransformation:
  """Adam without the learning rate (the loop multiplies by the epoch's rate).

  `optim.eps_inside_sqrt=True` is the official `nn.adam_updates`: m_hat / sqrt(v_hat + eps).
  Historical averaging, when its weight is > 0, comes first so it acts like a term of the loss;
  `optim.historical_averaging_include_current` selects the reading of the paper's mean (see
  `itgan_jax.optim.historical_averaging`).
  """
  if optim.eps_inside_sqrt:
    adam = optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=0.0, eps_root=optim.eps)
  else:
    adam = optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps)
  if historical_weight:
    from itgan_jax.optim.historical_averaging import historical_averaging
    include_current = bool(optim.get("historical_averaging_include_current", False))
    return optax.chain(historical_averaging(historical_weight, include_current=include_current),
                       adam)
  return adam


def build_lr_schedule(optim: ml_collections.ConfigDict) -> Callable[[jax.Array], jax.Array]:
  """Learning rate as a function of the (integer) epoch."""
  return schedules.make_schedule(optim.schedule, base_lr=optim.lr, **dict(optim.schedule_kwargs))


def _validate(config: ml_collections.ConfigDict) -> None:
  if config.variant not in VARIANTS:
    raise ValueError(f"config.variant={config.variant!r}; choose one of {VARIANTS}")
  if config.train.batch_size <= 0 or config.train.num_epochs <= 0:
    raise ValueError("train.batch_size and train.num_epochs must be positive")
  if config.train.steps_per_call <= 0:
    raise ValueError("train.steps_per_call must be positive")
  gan_losses.check_label_smoothing(config.loss.label_smoothing)
  if config.loss.generator != "feature_matching":
    gan_losses.make_generator_loss(config.loss.generator, config.loss.get("kl_target", 0.375))
  for player in ("d", "g"):
    weight = config.optim.get(f"historical_averaging_{player}", 0.0)
    if weight < 0:
      raise ValueError(f"optim.historical_averaging_{player}={weight} must be >= 0 (0 = off)")
  if config.train.get("g_steps_per_d_step", 1) < 1:
    raise ValueError(f"train.g_steps_per_d_step={config.train.g_steps_per_d_step} must be >= 1")


def _check_discriminator_features(discriminator, image_shape, loss) -> None:
  """Feature matching reads D's feature tuple: check the configured layer exists (traced only)."""
  if loss.generator != "feature_matching":
    return
  x = jax.ShapeDtypeStruct((2,) + tuple(image_shape), np.float32)
  rngs = {k: jax.random.PRNGKey(0) for k in ("params", "noise", "dropout")}
  (_, feats), _ = jax.eval_shape(
      lambda x: discriminator.init_with_output(rngs, x, train=True), x)
  n = len(feats)
  if not -n <= loss.fm_layer < n:
    raise ValueError(f"loss.fm_layer={loss.fm_layer} but the discriminator "
                     f"{type(discriminator).__name__} exposes {n} feature layer(s) for feature "
                     f"matching (valid: {-n}..{n - 1}); choose one of them or another "
                     "loss.generator")


def build(config: ml_collections.ConfigDict) -> Experiment:
  """Builds the experiment described by `config` (validated with clear messages)."""
  _validate(config)
  d = config.data
  ds = datasets_lib.load_dataset(d.name, source=d.source, data_dir=d.dir,
                                 tfds_data_dir=d.tfds_data_dir, allow_download=d.allow_download)
  num_train = ds.train_x.shape[0]
  if d.num_labeled % ds.num_classes:
    raise ValueError(f"data.num_labeled={d.num_labeled} must be a multiple of the "
                     f"{ds.num_classes} classes (the official protocol is class-balanced)")
  labeled = ssl_data.select_labeled(ds.train_y, d.num_labeled // ds.num_classes, d.seed_data,
                                    ds.num_classes)
  # Official: data-dependent init on trainx[:500] after the seed_data permutation.
  init_idx = np.random.RandomState(d.seed_data).permutation(num_train)[:d.init_size]
  batch_size = config.train.batch_size
  steps_per_epoch = config.train.steps_per_epoch or num_train // batch_size
  if not 0 < steps_per_epoch <= num_train // batch_size:
    raise ValueError(f"train.steps_per_epoch={steps_per_epoch} must be in [1, "
                     f"{num_train // batch_size}] (one pass over the {num_train} unlabeled examples)")

  generator, discriminator = models.build(config.model, ds.num_classes, ds.train_x.shape[1:])
  _check_discriminator_features(discriminator, ds.train_x.shape[1:], config.loss)
  l, o = config.loss, config.optim
  variant = SemiSupervisedGAN(
      generator=generator, discriminator=discriminator,
      g_tx=build_optimizer(o, o.historical_averaging_g),
      d_tx=build_optimizer(o, o.historical_averaging_d),
      lr_schedule=build_lr_schedule(o), steps_per_epoch=steps_per_epoch,
      latent_dim=config.model.z_dim, latent_dist=config.model.z_dist, batch_size=batch_size,
      unlabeled_weight=l.unlabeled_weight, generator_loss=l.generator,
      fm_distance=l.fm_distance, fm_layer=l.fm_layer, label_smoothing=l.label_smoothing,
      kl_target=l.get("kl_target", 0.375),
      ema_rate=o.ema_rate, ema_zero_init=o.ema_zero_init, ema_debias=o.ema_debias,
      g_steps_per_d_step=config.train.g_steps_per_d_step)

  def epoch_plan(epoch: int) -> dict[str, np.ndarray]:
    plan = ssl_data.ssl_epoch_plan(num_train, labeled, batch_size, config.seed, epoch)
    return {k: np.asarray(v[:steps_per_epoch], np.int32) for k, v in plan.items()}

  return Experiment(
      variant=variant,
      feeder=input_pipeline.DeviceFeeder({"x": ds.train_x, "y": ds.train_y},
                                         input_pipeline.SSL_STREAMS, d.scale),
      epoch_plan=epoch_plan, steps_per_epoch=steps_per_epoch,
      x_init=ds.train_x[init_idx], test_x=ds.test_x, test_y=ds.test_y, scale=d.scale,
      sample_latent=functools.partial(_sample, dim=config.model.z_dim, dist=config.model.z_dist),
      curve_keys=("test_err_ema", "test_err_raw", "loss_lab", "loss_unl", "loss_gen",
                  "train_err"))


def _sample(rng, num, *, dim, dist):
  return sample_latent(rng, num, dim, dist)
