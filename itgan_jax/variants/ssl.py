"""Semi-supervised K+1 GAN training (Salimans et al. 2016, Sec. 5; openai/improved-gan Theano scripts).

One iteration = one discriminator update on (labeled, unlabeled, generated) batches followed by
`g_steps_per_d_step` generator updates, as `train_batch_disc` then `train_batch_gen` in the official
scripts. The discriminator's EMA (Polyak) parameters are updated with the parameters from *before*
the step's update, because Theano applies all updates of one function call simultaneously.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from itgan_jax.losses import feature_matching as fm_lib
from itgan_jax.losses import gan as gan_losses
from itgan_jax.losses import ssl as ssl_losses
from itgan_jax.models.latent import sample_latent
from itgan_jax.optim import ema as ema_lib
from itgan_jax.train.state import Player, TrainState

GENERATOR_LOSSES = ("feature_matching", "minimax", "non_saturating", "kl_target")


def _split_variables(variables: dict) -> tuple[Any, dict]:
  variables = dict(variables)
  return variables.pop("params"), variables


@dataclasses.dataclass(frozen=True)
class SemiSupervisedGAN:
  """K+1 semi-supervised GAN: `init` and a pure `train_step(state, batch, rng)`.

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
    k_g, k_gn, k_z, k_d, k_dn, k_dd, k_run = jax.random.split(rng, 7)
    z = sample_latent(k_z, self.batch_size, self.latent_dim, self.latent_dist)
    g_params, g_consts = _split_variables(
        self.generator.init({"params": k_g, "noise": k_gn, "vbn": k_gn}, z, train=True))
    d_params, d_consts = _split_variables(
        self.discriminator.init({"params": k_d, "noise": k_dn, "dropout": k_dd}, x_init,
                                train=True))
    d_ema = ema_lib.ema_init(d_params, zero_init=self.ema_zero_init) if self.ema_rate else None
    return TrainState(
        step=jnp.zeros([], jnp.int32), rng=k_run,
        g=Player(g_params, g_consts, self.g_tx.init(g_params), None),
        d=Player(d_params, d_consts, self.d_tx.init(d_params), d_ema))

  # ------------------------------------------------------------------------------------------
  def _generate(self, g_params, g_consts, rng):
    z = sample_latent(rng, self.batch_size, self.latent_dim, self.latent_dist)
    return self.generator.apply({"params": g_params, **g_consts}, z, train=True)

  def _discriminate(self, d_params, d_consts, x, rng):
    k_noise, k_drop = jax.random.split(rng)
    return self.discriminator.apply({"params": d_params, **d_consts}, x, train=True,
                                    rngs={"noise": k_noise, "dropout": k_drop})

  @staticmethod
  def _apply(player: Player, tx, grads, lr) -> Player:
    updates, opt_state = tx.update(grads, player.opt_state, player.params)
    params = jax.tree.map(lambda p, u: p - lr * u, player.params, updates)
    return player.replace(params=params, opt_state=opt_state)

  def _d_update(self, state: TrainState, batch: dict, rng, lr) -> tuple[Player, dict]:
    k_z, k_lab, k_unl, k_gen = jax.random.split(rng, 4)
    x_gen = jax.lax.stop_gradient(self._generate(state.g.params, state.g.constants, k_z))
    d = state.d

    def loss_fn(params):
      if getattr(self.discriminator, "batch_independent", False):
        # D treats examples independently (no batch statistics), so one call on the three
        # batches stacked equals the official three calls, with 3x larger matrix products.
        logits, _ = self._discriminate(
            params, d.constants, jnp.concatenate([batch["x_lab"], batch["x_unl"], x_gen]), k_lab)
        logits_lab, logits_unl, logits_gen = jnp.split(logits, 3)
      else:  # batch-dependent layers (minibatch features): statistics within each pure batch.
        logits_lab, _ = self._discriminate(params, d.constants, batch["x_lab"], k_lab)
        logits_unl, _ = self._discriminate(params, d.constants, batch["x_unl"], k_unl)
        logits_gen, _ = self._discriminate(params, d.constants, x_gen, k_gen)
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
    new_d = self._apply(d, self.d_tx, grads, lr)
    if d.ema is not None:
      # Theano: a <- a + rate * (p_old - a), evaluated simultaneously with p's own update.
      new_d = new_d.replace(ema=ema_lib.ema_update(d.ema, d.params, self.ema_rate))
    return new_d, aux

  def _g_update(self, g: Player, d: Player, batch: dict, rng, lr) -> tuple[Player, jax.Array]:
    k_z, k_real, k_gen = jax.random.split(rng, 3)
    if self.generator_loss == "feature_matching":
      _, feats_real = self._discriminate(d.params, d.constants, batch["x_unl2"], k_real)
      feat_real = jax.lax.stop_gradient(feats_real[self.fm_layer])

    def loss_fn(params):
      x_gen = self._generate(params, g.constants, k_z)
      logits_gen, feats_gen = self._discriminate(d.params, d.constants, x_gen, k_gen)
      if self.generator_loss == "feature_matching":
        return fm_lib.feature_matching_loss(feat_real, feats_gen[self.fm_layer],
                                            distance=self.fm_distance)
      return gan_losses.generator_loss(ssl_losses.log_sum_exp(logits_gen),
                                       kind=self.generator_loss, target=self.kl_target)

    loss, grads = jax.value_and_grad(loss_fn)(g.params)
    return self._apply(g, self.g_tx, grads, lr), loss

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One D update then `g_steps_per_d_step` G updates (D's new parameters in the G loss).

    `batch` holds `x_lab`, `y_lab`, `x_unl` and, for feature matching, `x_unl2` (a second,
    independently shuffled unlabeled batch, official `trainx_unl2`).
    """
    epoch = state.step // self.steps_per_epoch
    lr = self.lr_schedule(epoch)
    k_d, k_g = jax.random.split(rng)
    d, metrics = self._d_update(state, batch, k_d, lr)
    g = state.g
    for i in range(self.g_steps_per_d_step):
      g, loss_gen = self._g_update(g, d, batch, jax.random.fold_in(k_g, i), lr)
    metrics = dict(metrics, loss_gen=loss_gen, lr=jnp.asarray(lr, jnp.float32))
    return state.replace(step=state.step + 1, g=g, d=d), metrics

  # ------------------------------------------------------------------------------------------
  def classify(self, state: TrainState, x: jax.Array, use_ema: bool = True) -> jax.Array:
    """Class logits of D in deterministic mode (no noise/dropout), with EMA parameters if asked."""
    d = state.d
    if use_ema and d.ema is not None:
      params = d.ema
      if self.ema_debias and self.ema_zero_init:
        params = ema_lib.ema_debiased(params, state.step, self.ema_rate)
    else:
      params = d.params
    logits, _ = self.discriminator.apply({"params": params, **d.constants}, x, train=False)
    return logits

  def generate(self, state: TrainState, z: jax.Array) -> jax.Array:
    """Generator samples for a given latent batch (batch statistics, as the official G always)."""
    return self.generator.apply(state.g.variables(), z, train=True)
