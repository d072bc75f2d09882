"""Semi-supervised K+1 GAN training (Salimans et al. 2016, Sec. 5; openai/improved-gan Theano scripts).

One iteration = one discriminator update on (labeled, unlabeled, generated) batches followed by
`g_steps_per_d_step` generator updates, as `train_batch_disc` then `train_batch_gen` in the official
scripts. The discriminator's EMA (Polyak) parameters are updated with the parameters from *before*
the step's update, because Theano applies all updates of one function call simultaneously.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import ml_collections
import numpy as np

from itgan_jax import models
from itgan_jax.data import ssl as ssl_data
from itgan_jax.losses import gan as gan_losses
from itgan_jax.losses import ssl as ssl_losses
from itgan_jax.train import players
from itgan_jax.train.state import Player, TrainState
from itgan_jax.variants import base

GENERATOR_LOSSES = ("feature_matching", "minimax", "non_saturating", "kl_target")

# The batch contract: batch key -> (dataset array, plan stream of `data.ssl.ssl_epoch_plan`).
STREAMS = {"x_lab": ("x", "lab"), "y_lab": ("y", "lab"), "x_unl": ("x", "unl"),
           "x_unl2": ("x", "unl2")}
EVALUATORS = ("classifier_error", "sample_grid", "image_metrics")


@dataclasses.dataclass(frozen=True)
class SemiSupervisedGAN(base.DThenGVariant):
  """K+1 semi-supervised GAN: `init` and a pure `train_step(state, batch, rng)`
  (`base.DThenGVariant`) on batches of `x_lab`, `y_lab`, `x_unl` and, for feature matching,
  `x_unl2` (a second, independently shuffled unlabeled batch, official `trainx_unl2`).

  Attributes:
    generator: flax module, `G(z, train) -> images` in the data's model range.
    discriminator: flax module, `D(x, train) -> (logits (N, K), features tuple)`.
    g_tx, d_tx: optax transformations *without* the learning rate (the per-epoch learning rate
      `lr_schedule(epoch)` multiplies their output), e.g. official Adam with eps inside the sqrt.
    steps_per_epoch: iterations per epoch, for the per-epoch learning-rate schedule.
    latent_dim, latent_dist: generator input, see `sample_latent`.
    batch_size: generated batch size (= labeled = unlabeled batch size in the official scripts).
    unlabeled_weight: weight of the unsupervised loss (official 1.0).
    generator_loss: 'feature_matching' (FM scripts), 'minimax' (MD scripts: G minimises
      log(1 - D(G(z)))), 'non_saturating' (-log D(G(z))) or 'kl_target' (imagenet code).
    fm_distance, fm_layer: feature matching distance ('l2' MNIST, 'l1' CIFAR/SVHN code) and which
      entry of D's feature tuple it reads.
    label_smoothing: real target probability of the GAN part of D's loss (1.0 = none); with
      alpha < 1 the unsupervised loss is `losses.gan.discriminator_gan_loss` on d = LSE(logits).
    kl_target: generator target probability of 'kl_target' (imagenet code: 0.75 / 2).
    ema_rate: Polyak rate of D's evaluation parameters (official 1e-4); 0 disables.
    ema_zero_init: official zero-initialised EMA (early evaluations use shrunken weights).
    ema_debias: evaluate the zero-initialised EMA divided by 1 - (1 - rate)^step (Adam-style bias
      correction) instead of the official raw average.
    g_steps_per_d_step: generator updates per discriminator update (official MD scripts: 3).
    compute_dtype: 'float32' or 'bfloat16', the dtype of the networks' forward passes
      (`config.precision.compute_dtype`; parameters and optimizer state stay float32).
  """
  generator: nn.Module
  discriminator: nn.Module
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  lr_schedule: Callable[[jax.Array], jax.Array]
  steps_per_epoch: int
  latent_dim: int
  latent_dist: str
  batch_size: int
  unlabeled_weight: float = 1.0
  generator_loss: str = "feature_matching"
  fm_distance: str = "l2"
  fm_layer: int = -1
  label_smoothing: float = 1.0
  kl_target: float = 0.375
  ema_rate: float = 1e-4
  ema_zero_init: bool = True
  ema_debias: bool = False
  g_steps_per_d_step: int = 1
  compute_dtype: str = "float32"

  metric_keys = ("loss_lab", "loss_unl", "train_err", "d_real", "d_fake", "loss_gen", "lr")
  progress_keys = ("loss_lab", "loss_unl", "loss_gen")
  curve_keys = ("test_err_ema", "test_err_raw", "loss_lab", "loss_unl", "loss_gen", "train_err")

  def __post_init__(self):
    if self.generator_loss not in GENERATOR_LOSSES:
      raise ValueError(f"loss.generator={self.generator_loss!r} is not one of {GENERATOR_LOSSES}")
    if self.g_steps_per_d_step < 1:
      raise ValueError(f"train.g_steps_per_d_step must be >= 1, got {self.g_steps_per_d_step}")
    gan_losses.check_label_smoothing(self.label_smoothing)
    if self.generator_loss != "feature_matching":
      gan_losses.make_generator_loss(self.generator_loss, self.kl_target)  # validates the target

  # ------------------------------------------------------------------------------------------
  def init(self, rng: jax.Array, x_init: jax.Array) -> TrainState:
    """Initialises both players; D's weight-norm layers use data-dependent init on `x_init`."""
    ema = ("zeros" if self.ema_zero_init else "copy") if self.ema_rate else None
    return self.init_players(rng, x_init, d_ema=ema)

  # ------------------------------------------------------------------------------------------
  def discriminator_update(self, state: TrainState, batch: dict, rng, lr
                           ) -> tuple[Player, dict]:
    """D's update on (labeled, unlabeled, generated) batches; its EMA reads the pre-step D."""
    k_z, k_lab, k_unl, k_gen = jax.random.split(rng, 4)
    x_gen = jax.lax.stop_gradient(self.generate_batch(state.g.params, state.g.constants, k_z))
    d = state.d

    def loss_fn(params):
      if getattr(self.discriminator, "batch_independent", False):
        # D treats examples independently (no batch statistics), so one call on the three
        # batches stacked equals the official three calls, with 3x larger matrix products.
        logits, _ = self.discriminate_train(
            params, d.constants, jnp.concatenate([batch["x_lab"], batch["x_unl"], x_gen]), k_lab)
        logits_lab, logits_unl, logits_gen = jnp.split(logits, 3)
      else:  # batch-dependent layers (minibatch features): statistics within each pure batch.
        logits_lab, _ = self.discriminate_train(params, d.constants, batch["x_lab"], k_lab)
        logits_unl, _ = self.discriminate_train(params, d.constants, batch["x_unl"], k_unl)
        logits_gen, _ = self.discriminate_train(params, d.constants, x_gen, k_gen)
      if self.label_smoothing == 1.0:
        loss, aux = ssl_losses.discriminator_loss(
            logits_lab, batch["y_lab"], logits_unl, logits_gen, self.unlabeled_weight)
      else:
        loss_lab = ssl_losses.supervised_loss(logits_lab, batch["y_lab"])
        loss_unl = gan_losses.discriminator_gan_loss(
            ssl_losses.log_sum_exp(logits_unl), ssl_losses.log_sum_exp(logits_gen),
            real_target=self.label_smoothing)
        loss = loss_lab + self.unlabeled_weight * loss_unl
        aux = dict(loss_lab=loss_lab, loss_unl=loss_unl,
                   train_err=ssl_losses.classification_error(logits_lab, batch["y_lab"]))
      aux = dict(aux)
      aux["d_real"] = jnp.mean(jax.nn.sigmoid(ssl_losses.log_sum_exp(logits_unl)))
      aux["d_fake"] = jnp.mean(jax.nn.sigmoid(ssl_losses.log_sum_exp(logits_gen)))
      return loss, aux

    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(d.params)
    # Theano: a <- a + rate * (p_old - a), evaluated simultaneously with p's own update.
    return players.step(d, self.d_tx, grads, lr, self.ema_rate), aux

  def generator_update(self, g: Player, d: Player, batch: dict, rng, lr
                       ) -> tuple[Player, jax.Array]:
    """One G update against discriminator `d` (feature matching reads `batch['x_unl2']`); the
    GAN losses read d = LSE(logits); returns the new G and its loss."""
    loss, grads = self.generator_loss_and_grads(g, d, batch.get("x_unl2"), rng,
                                                ssl_losses.log_sum_exp)
    return players.apply_updates(g, self.g_tx, grads, lr), loss

  # ------------------------------------------------------------------------------------------
  def classify(self, state: TrainState, x: jax.Array, use_ema: bool = True) -> jax.Array:
    """Class logits of D in deterministic mode (no noise/dropout), with EMA parameters if asked."""
    params = players.evaluation_params(state.d, use_ema, step_count=state.step,
                                       ema_rate=self.ema_rate,
                                       debias=self.ema_debias and self.ema_zero_init)
    logits, _ = self.apply_network(self.discriminator, {"params": params, **state.d.constants}, x,
                                   train=False)
    return logits

  def generate(self, state: TrainState, z: jax.Array) -> jax.Array:
    """Generator samples for a given latent batch (batch statistics, as the official G always)."""
    return self.apply_network(self.generator, state.g.variables(), z, train=True)


SUBSET_RNGS = ("seed_data", "seed")


def _subset_seed(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """(RandomState seed, draws before its permutation) of the labeled subset: `data.subset_rng`
  'seed_data' (FM scripts: a fresh RandomState(seed_data)) or 'seed' (MD scripts: RandomState(seed)
  after the two randint draws that seed Theano and Lasagne; data.seed_data is then unused)."""
  which = config.data.get("subset_rng", "seed_data")
  if which not in SUBSET_RNGS:
    raise ValueError(f"config.data.subset_rng={which!r} is not one of {SUBSET_RNGS}")
  return (config.data.seed_data, 0) if which == "seed_data" else (config.seed, 2)


def labeled_indices(config: ml_collections.ConfigDict, dataset) -> np.ndarray:
  """The training-set indices of the run's labeled subset, class by class (`data.num_labeled`
  examples, the official `txs/tys`: `data.ssl.select_labeled` with `data.subset_rng`'s seed)."""
  d = config.data
  if d.num_labeled <= 0 or d.num_labeled % dataset.num_classes:
    raise ValueError(f"data.num_labeled={d.num_labeled} must be a positive multiple of the "
                     f"{dataset.num_classes} classes (the official protocol is class-balanced)")
  subset_seed, draws_before = _subset_seed(config)
  return ssl_data.select_labeled(dataset.train_y, d.num_labeled // dataset.num_classes,
                                 subset_seed, dataset.num_classes, draws_before=draws_before)


def build(config: ml_collections.ConfigDict, dataset) -> base.Experiment:
  """The semi-supervised experiment: labeled subset, streams, K+1 game, classifier evaluation.

  Labeled subset and init batch as the official scripts (`data.seed_data`); one epoch = one pass
  over the unlabeled training set (`data.ssl.ssl_epoch_plan`).
  """
  d, l, t = config.data, config.loss, config.train
  base.check_generator_loss(l)
  if t.get("g_steps_per_d_step", 1) < 1:
    raise ValueError(f"train.g_steps_per_d_step={t.g_steps_per_d_step} must be >= 1")
  num_train = dataset.train_x.shape[0]
  labeled = labeled_indices(config, dataset)
  init = base.init_batch(dataset, d.init_size, d.seed_data, d.scale)
  steps = base.steps_per_epoch(t, num_train)
  generator, discriminator = models.build(config.model, dataset.num_classes, dataset.image_shape)
  if l.generator == "feature_matching":
    base.check_feature_layer(discriminator, dataset.image_shape, l.fm_layer)
  g_tx, d_tx, lr_schedule = base.optimizers(config)
  o = config.optim
  variant = SemiSupervisedGAN(
      generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      lr_schedule=lr_schedule, steps_per_epoch=steps,
      latent_dim=config.model.z_dim, latent_dist=config.model.z_dist, batch_size=t.batch_size,
      unlabeled_weight=l.unlabeled_weight, generator_loss=l.generator,
      fm_distance=l.fm_distance, fm_layer=l.fm_layer, label_smoothing=l.label_smoothing,
      kl_target=l.get("kl_target", 0.375),
      ema_rate=o.ema_rate, ema_zero_init=o.ema_zero_init, ema_debias=o.ema_debias,
      g_steps_per_d_step=t.get("g_steps_per_d_step", 1), compute_dtype=base.compute_dtype(config))

  def epoch_plan(epoch: int) -> dict[str, np.ndarray]:
    plan = ssl_data.ssl_epoch_plan(num_train, labeled, t.batch_size, config.seed, epoch)
    return {k: np.asarray(v[:steps], np.int32) for k, v in plan.items()}

  return base.assemble(config, dataset, variant,
                       arrays={"x": dataset.train_x, "y": dataset.train_y}, streams=STREAMS,
                       epoch_plan=epoch_plan, steps=steps, init=init, offered=EVALUATORS)
