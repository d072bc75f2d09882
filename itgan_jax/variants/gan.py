"""Unsupervised GAN (`config.variant = "gan"`): one real/fake logit, the Improved-GAN techniques.

The game of the Table 3 "-L" columns (Salimans et al. 2016, papers.md E.2) and of the next
papers' baselines. D outputs one logit d(x) = logit D(x) (a discriminator family built with
`num_classes=1`); one iteration = one D update on a real and a generated batch, then
`g_steps_per_d_step` G updates against the updated D (the order of the official Theano scripts).

D loss (`losses.gan.discriminator_gan_loss`): 0.5 E[KL(alpha || D(x))] + 0.5 E[-log(1 - D(G(z)))]
with one-sided label smoothing alpha (`loss.label_smoothing`, 1 = none); at alpha = 1 it is the
standard 0.5 [-log D(x)] + 0.5 [-log(1 - D(G(z)))].
G loss (`loss.generator`): 'minimax' log(1 - D(G(z))) (official MD scripts), 'non_saturating'
-log D(G(z)), 'kl_target' KL(target || D(G(z))) (imagenet code), or 'feature_matching'
||E f(x) - E f(G(z))|| on D's features (`loss.fm_layer`, `loss.fm_distance`) with the real batch
from a second, independently shuffled stream (official `trainx_unl2`).
Minibatch discrimination, VBN/BN generators (model keys), historical averaging (optim keys) and an
EMA of G (`optim.g_ema_rate`, 0 = off) come from the config. The G EMA follows ProGAN's `Gs`: it
starts as a copy of G and is moved toward G's *updated* parameters after every G update,
a <- a + rate (p_new - a); samples and image metrics use it when it exists.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from itgan_jax import models
from itgan_jax.data import ssl as plans
from itgan_jax.losses import gan as gan_losses
from itgan_jax.train import players
from itgan_jax.train.state import Player, TrainState
from itgan_jax.variants import base

GENERATOR_LOSSES = ("feature_matching",) + gan_losses.GENERATOR_KINDS
EVALUATORS = ("sample_grid", "image_metrics")


def streams(generator_loss: str) -> dict[str, tuple[str, str]]:
  """The batch contract: `x` real images for D; `x_fm`, feature matching's second real stream."""
  out = {"x": ("x", "idx")}
  if generator_loss == "feature_matching":
    out["x_fm"] = ("x", "idx_fm")
  return out


def real_logit(logits: jax.Array) -> jax.Array:
  """D's (N, 1) output -> the (N,) real/fake logit d."""
  if logits.ndim != 2 or logits.shape[1] != 1:
    raise ValueError(f"the gan variant needs a discriminator with one output logit, got logits "
                     f"of shape {logits.shape}")
  return logits[:, 0]


@dataclasses.dataclass(frozen=True)
class UnsupervisedGAN(base.DThenGVariant):
  """Unsupervised GAN: `init` and a pure `train_step(state, batch, rng)` (`base.DThenGVariant`)
  on batches of `x` (real images) and, for feature matching, `x_fm`.

  Attributes:
    generator: flax module, `G(z, train) -> images` in the data's model range.
    discriminator: flax module, `D(x, train) -> (logits (N, 1), features tuple)`.
    g_tx, d_tx: optax transformations without the learning rate (`optim.factory`).
    lr_schedule: per-epoch learning rate.
    steps_per_epoch: iterations per epoch (for the schedule).
    latent_dim, latent_dist: generator input (`models.latent.sample_latent`).
    batch_size: generated batch size (= real batch size).
    generator_loss: one of GENERATOR_LOSSES (see the module docstring).
    fm_distance, fm_layer: feature matching distance ('l2' | 'l1') and D feature entry.
    label_smoothing: real target alpha of D's loss (1.0 = none).
    kl_target: G's target probability of 'kl_target'.
    g_steps_per_d_step: G updates per D update (official MD scripts: 3).
    g_ema_rate: rate of G's EMA (0 = no EMA; ProGAN 0.001, i.e. beta 0.999).
    compute_dtype: 'float32' or 'bfloat16', the dtype of the networks' forward passes
      (`config.precision.compute_dtype`; parameters, optimizer state and the EMA stay float32).
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
  generator_loss: str = "non_saturating"
  fm_distance: str = "l2"
  fm_layer: int = -1
  label_smoothing: float = 1.0
  kl_target: float = 0.375
  g_steps_per_d_step: int = 1
  g_ema_rate: float = 0.0
  compute_dtype: str = "float32"

  metric_keys = ("loss_d", "d_real", "d_fake", "loss_gen", "lr")
  progress_keys = ("loss_d", "loss_gen")
  curve_keys = ("loss_d", "loss_gen", "d_real", "d_fake")

  def __post_init__(self):
    if self.generator_loss not in GENERATOR_LOSSES:
      raise ValueError(f"loss.generator={self.generator_loss!r} is not one of {GENERATOR_LOSSES}")
    if self.g_steps_per_d_step < 1:
      raise ValueError(f"train.g_steps_per_d_step must be >= 1, got {self.g_steps_per_d_step}")
    if not 0.0 <= self.g_ema_rate <= 1.0:
      raise ValueError(f"optim.g_ema_rate={self.g_ema_rate} must be in [0, 1] (0 = no G EMA)")
    gan_losses.check_label_smoothing(self.label_smoothing)
    if self.generator_loss != "feature_matching":
      gan_losses.make_generator_loss(self.generator_loss, self.kl_target)

  # ------------------------------------------------------------------------------------------
  def init(self, rng: jax.Array, x_init: jax.Array) -> TrainState:
    """Both players; data-dependent init of D's weight-norm layers on `x_init`."""
    return self.init_players(rng, x_init, g_ema="copy" if self.g_ema_rate else None)

  def discriminator_update(self, state: TrainState, batch: dict, rng, lr
                           ) -> tuple[Player, dict]:
    """D's update on a real batch and a batch of the current G."""
    k_z, k_real, k_gen = jax.random.split(rng, 3)
    x_gen = jax.lax.stop_gradient(self.generate_batch(state.g.params, state.g.constants, k_z))
    d = state.d

    def loss_fn(params):
      if getattr(self.discriminator, "batch_independent", False):
        # Examples are independent: one call on both batches equals two calls.
        logits, _ = self.discriminate_train(params, d.constants,
                                       jnp.concatenate([batch["x"], x_gen]), k_real)
        d_real, d_fake = jnp.split(real_logit(logits), 2)
      else:  # minibatch features: statistics within each pure batch (papers.md A.1)
        d_real = real_logit(self.discriminate_train(params, d.constants, batch["x"], k_real)[0])
        d_fake = real_logit(self.discriminate_train(params, d.constants, x_gen, k_gen)[0])
      loss = gan_losses.discriminator_gan_loss(d_real, d_fake, real_target=self.label_smoothing)
      aux = dict(loss_d=loss, d_real=jnp.mean(jax.nn.sigmoid(d_real)),
                 d_fake=jnp.mean(jax.nn.sigmoid(d_fake)))
      return loss, aux

    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(d.params)
    return players.step(d, self.d_tx, grads, lr), aux

  def generator_update(self, g: Player, d: Player, batch: dict, rng, lr
                       ) -> tuple[Player, jax.Array]:
    """One G update against `d` (feature matching reads `batch['x_fm']`); the G EMA (if any)
    follows the updated parameters."""
    loss, grads = self.generator_loss_and_grads(g, d, batch.get("x_fm"), rng, real_logit)
    new = players.apply_updates(g, self.g_tx, grads, lr)
    if self.g_ema_rate:
      new = players.update_ema(new, new.params, self.g_ema_rate)
    return new, loss

  # ------------------------------------------------------------------------------------------
  def discriminate(self, state: TrainState, x: jax.Array) -> jax.Array:
    """D's real logit in deterministic mode (no noise, no dropout)."""
    logits, _ = self.apply_network(self.discriminator, state.d.variables(), x, train=False)
    return real_logit(logits)

  def generate(self, state: TrainState, z: jax.Array, use_ema: bool = True) -> jax.Array:
    """Samples for latents `z`: G's EMA when it exists (and `use_ema`), else G (batch
    statistics, as the official G always)."""
    g = state.g
    return self.apply_network(self.generator, g.variables(use_ema=use_ema and g.ema is not None),
                              z, train=True)


def build(config: ml_collections.ConfigDict, dataset) -> base.Experiment:
  """The unsupervised experiment: every training image unlabeled, one pass per epoch."""
  d, l, t, o = config.data, config.loss, config.train, config.optim
  base.check_generator_loss(l)
  num_train = dataset.train_x.shape[0]
  init = base.init_batch(dataset, d.init_size, config.seed, d.scale)
  steps = base.steps_per_epoch(t, num_train)
  generator, discriminator = models.build(config.model, 1, dataset.image_shape)
  if l.generator == "feature_matching":
    base.check_feature_layer(discriminator, dataset.image_shape, l.fm_layer)
  g_tx, d_tx, lr_schedule = base.optimizers(config)
  variant = UnsupervisedGAN(
      generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      lr_schedule=lr_schedule, steps_per_epoch=steps, latent_dim=config.model.z_dim,
      latent_dist=config.model.z_dist, batch_size=t.batch_size, generator_loss=l.generator,
      fm_distance=l.get("fm_distance", "l2"), fm_layer=l.get("fm_layer", -1),
      label_smoothing=l.label_smoothing, kl_target=l.get("kl_target", 0.375),
      g_steps_per_d_step=t.get("g_steps_per_d_step", 1), g_ema_rate=o.get("g_ema_rate", 0.0),
      compute_dtype=base.compute_dtype(config))
  batch_streams = streams(l.generator)
  plan_streams = tuple(dict.fromkeys(stream for _, stream in batch_streams.values()))

  def epoch_plan(epoch: int) -> dict[str, np.ndarray]:
    plan = plans.gan_epoch_plan(num_train, t.batch_size, config.seed, epoch, plan_streams)
    return {k: v[:steps] for k, v in plan.items()}

  return base.assemble(config, dataset, variant, arrays={"x": dataset.train_x},
                       streams=batch_streams, epoch_plan=epoch_plan, steps=steps, init=init,
                       offered=EVALUATORS)
