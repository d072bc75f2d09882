"""Progressive growing of GANs (`config.variant = "progressive"`; Karras et al. 2018).

The networks (`models/progressive.py`, `model.name='progressive'`) hold one parameter tree at full
size; the growth schedule (`variants/growth.py`) splits training into phases by images shown:
stabilise a resolution, fade in the next. The engine compiles one step per phase
(`phase_starts`, `phase_train_step`); inside a fade the blend factor alpha is computed in the
compiled step from the step count, and it blends G's output (upsampled toRGB of the previous
level vs the new block), D's input (fromRGB of the 2x2-pooled image vs the new block) and the real
images (their pooled-and-upsampled version vs themselves: TF `process_reals`). At each phase
start `enter_phase` restarts Adam's moments (`optim.reset`, official: every phase start).

Loss (`loss.kind`): 'wgan_gp' (papers.md B.4: lambda `loss.gp_weight` 10, target
`loss.gp_target` 1 or 750 for CIFAR, drift `loss.drift` 0.001, one interpolation factor per
sample) or 'bce' (the first paper's D loss with one-sided label smoothing `loss.label_smoothing`
and the non-saturating G loss), so the first paper's techniques compose where the loss allows.
Update (`train.update`): 'simultaneous' (Theano CIFAR `separate_funcs=False`: one G forward, the
G and D gradients both at the step's starting parameters, applied together) or 'alternating'
(TF: a D step, then a G step with fresh latents against the updated D; with
`train.d_steps_per_g_step` n > 1, G steps only every n-th step, Table 1 rows (a)-(c)).
The G EMA (`optim.g_ema_rate`, ProGAN `G_smoothing` 0.999 -> rate 0.001) follows G after each
G update and makes the samples of `generate` (at the current level and alpha, nearest-upsampled
to the full resolution as TF's `Gs` output).
"""

from __future__ import annotations

import dataclasses
import functools
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
from itgan_jax.losses import wgan_gp
from itgan_jax.nn import progressive as layers
from itgan_jax.train import players
from itgan_jax.train.state import Player, TrainState
from itgan_jax.variants import base
from itgan_jax.variants import growth

LOSSES = ("wgan_gp", "bce")
UPDATES = ("simultaneous", "alternating")
EVALUATORS = ("sample_grid", "image_metrics")


def reals_at(x: jax.Array, level: int, full_level: int, alpha: jax.Array | None) -> jax.Array:
  """Full-resolution reals -> the phase's resolution (2x2 average pooling, as the official
  lower-resolution datasets), faded with their pooled-and-upsampled version in a fade:
  lerp(upsample(pool(x_l)), x_l, alpha)."""
  for _ in range(full_level - level):
    x = layers.downsample_avg(x)
  if alpha is None or level == 0:
    return x
  low = layers.upsample_nearest(layers.downsample_avg(x))
  return low + alpha * (x - low)


@dataclasses.dataclass(frozen=True)
class ProgressiveGAN(base.VariantBase):
  """The progressive game: `init`, one pure step per phase, `enter_phase`, `generate`.

  Attributes:
    generator, discriminator: `ProgressiveGenerator` / `ProgressiveDiscriminator` (`level`,
      `alpha` keywords; D returns (logits (N, 1), features)).
    g_tx, d_tx: optax transformations without the learning rate (`optim.factory`).
    lr_schedule: per-epoch learning rate; steps_per_epoch: iterations per epoch.
    schedule: the growth schedule (phases, alpha, optimizer resets).
    latent_dim, latent_dist, batch_size: the generator input and minibatch size.
    loss: one of LOSSES; gp_target, gp_weight, drift: WGAN-GP's gamma, lambda, eps_drift;
      label_smoothing: the real target of 'bce' (1.0 = none).
    update: one of UPDATES; d_steps_per_g_step: critic steps per G step ('alternating').
    g_ema_rate: rate of G's EMA (0 = none; ProGAN 0.001).
    fade_reals: blend the real images in a fade (TF `process_reals`; True).
  """
  generator: nn.Module
  discriminator: nn.Module
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  lr_schedule: Callable[[jax.Array], jax.Array]
  steps_per_epoch: int
  schedule: growth.GrowthSchedule
  latent_dim: int
  latent_dist: str
  batch_size: int
  loss: str = "wgan_gp"
  gp_target: float = 1.0
  gp_weight: float = 10.0
  drift: float = 0.001
  label_smoothing: float = 1.0
  update: str = "simultaneous"
  d_steps_per_g_step: int = 1
  g_ema_rate: float = 0.001
  fade_reals: bool = True
  compute_dtype: str = "float32"

  progress_keys = ("loss_d", "loss_gen", "lod")

  def __post_init__(self):
    if self.loss not in LOSSES:
      raise ValueError(f"loss.kind={self.loss!r} is not one of {LOSSES}")
    if self.update not in UPDATES:
      raise ValueError(f"train.update={self.update!r} is not one of {UPDATES}")
    if self.d_steps_per_g_step < 1:
      raise ValueError(f"train.d_steps_per_g_step={self.d_steps_per_g_step} must be >= 1")
    if self.d_steps_per_g_step > 1 and self.update != "alternating":
      raise ValueError("train.d_steps_per_g_step > 1 needs train.update='alternating' (the "
                       "simultaneous update makes one D and one G step from each minibatch)")
    if not 0.0 <= self.g_ema_rate <= 1.0:
      raise ValueError(f"optim.g_ema_rate={self.g_ema_rate} must be in [0, 1] (0 = no G EMA)")
    if self.loss == "bce":
      gan_losses.check_label_smoothing(self.label_smoothing)
    elif self.label_smoothing != 1.0:
      raise ValueError("loss.label_smoothing applies to loss.kind='bce' only (WGAN-GP has no "
                       "labels); set it to 1.0 or use the 'bce' loss")

  @property
  def metric_keys(self) -> tuple[str, ...]:
    extra = ("gp", "grad_norm", "wdist") if self.loss == "wgan_gp" else ()
    return ("loss_d", "loss_gen", "d_real", "d_fake") + extra + ("alpha", "lod", "lr")

  @property
  def curve_keys(self) -> tuple[str, ...]:
    extra = ("wdist", "grad_norm") if self.loss == "wgan_gp" else ()
    return ("loss_d", "loss_gen") + extra + ("lod",)

  @property
  def phase_starts(self) -> tuple[int, ...]:
    return self.schedule.phase_starts

  @property
  def full_level(self) -> int:
    return growth.level_of(self.schedule.resolution)

  # ------------------------------------------------------------------------------------------
  def init(self, rng: jax.Array, x_init: jax.Array) -> TrainState:
    """Both players at full size (every block, toRGB and fromRGB); G's EMA starts as a copy.
    D's init pass sees the reals at the starting resolution through the starting level's path,
    so a data-dependent layer (minibatch discrimination, Table 1 row e*) is initialised as in
    Theano, on the first phase's inputs."""
    level = self.schedule.phases[0].level
    return self.init_players(rng, reals_at(x_init, level, self.full_level, None),
                             g_ema="copy" if self.g_ema_rate else None,
                             d_kwargs=dict(level=level))

  def enter_phase(self, state: TrainState, phase: int) -> TrainState:
    """The first state of `phase`: Adam's moments restart when the schedule says so (the
    parameter tree is the same in every phase)."""
    if not 1 <= phase < len(self.schedule.phases):
      raise ValueError(f"phase {phase} is outside the schedule's {len(self.schedule.phases)} "
                       "phases")
    if not self.schedule.resets_optimizer(phase):
      return state
    return state.replace(g=state.g.replace(opt_state=self.g_tx.init(state.g.params)),
                         d=state.d.replace(opt_state=self.d_tx.init(state.d.params)))

  def phase_train_step(self, phase: int):
    if not 0 <= phase < len(self.schedule.phases):
      raise ValueError(f"phase {phase} is outside the schedule's {len(self.schedule.phases)} "
                       "phases")
    return functools.partial(self._train_step, phase=phase)

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    return self._train_step(state, batch, rng, phase=self.schedule.phase_at(0))

  # ------------------------------------------------------------------------------------------
  def _generate(self, params, constants, z, level: int, alpha) -> jax.Array:
    return self.apply_network(self.generator, {"params": params, **constants}, z, level=level,
                              alpha=alpha, train=True)

  def _critic(self, params, constants, level: int, alpha) -> Callable[[jax.Array], jax.Array]:
    def critic(x):
      logits, _ = self.apply_network(self.discriminator, {"params": params, **constants}, x,
                                     level=level, alpha=alpha, train=True)
      if logits.ndim != 2 or logits.shape[1] != 1:
        raise ValueError(f"the progressive variant needs one logit per image, got {logits.shape}")
      return logits[:, 0]
    return critic

  def _d_loss(self, critic, x_real, x_fake, u):
    if self.loss == "wgan_gp":
      return wgan_gp.discriminator_loss(critic, x_real, x_fake, u, gamma=self.gp_target,
                                        gp_weight=self.gp_weight, drift=self.drift)
    d_real, d_fake = critic(x_real), critic(x_fake)
    loss = gan_losses.discriminator_gan_loss(d_real, d_fake, real_target=self.label_smoothing)
    return loss, dict(d_real=jnp.mean(d_real), d_fake=jnp.mean(d_fake))

  def _g_loss(self, d_fake):
    if self.loss == "wgan_gp":
      return wgan_gp.generator_loss(d_fake)
    return gan_losses.generator_loss(d_fake, kind="non_saturating")

  def _d_update(self, d: Player, x_real, x_fake, u, level, alpha, lr) -> tuple[Player, dict]:
    def loss_fn(params):
      loss, aux = self._d_loss(self._critic(params, d.constants, level, alpha), x_real, x_fake, u)
      return loss, dict(aux, loss_d=loss)
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(d.params)
    return players.apply_updates(d, self.d_tx, grads, lr), aux

  def _g_apply(self, g: Player, grads, lr) -> Player:
    new = players.apply_updates(g, self.g_tx, grads, lr)
    if self.g_ema_rate:
      new = players.update_ema(new, new.params, self.g_ema_rate)
    return new

  def _g_update(self, g: Player, d: Player, z, level, alpha, lr) -> tuple[Player, jax.Array]:
    critic = self._critic(d.params, d.constants, level, alpha)
    loss, grads = jax.value_and_grad(
        lambda p: self._g_loss(critic(self._generate(p, g.constants, z, level, alpha))))(g.params)
    return self._g_apply(g, grads, lr), loss

  def _train_step(self, state: TrainState, batch: dict, rng: jax.Array, *, phase: int
                  ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One iteration of `phase`: D and G updates on the real batch `batch['x']` (full size)."""
    p = self.schedule.phases[phase]
    alpha = self.schedule.alpha(phase, state.step)
    lr = self.lr_schedule(state.step // self.steps_per_epoch)
    x_real = reals_at(batch["x"], p.level, self.full_level,
                      alpha if (p.fading and self.fade_reals) else None)
    k_z, k_u, k_zg = jax.random.split(rng, 3)
    z = self.sample_latent(k_z, self.batch_size)
    u = jax.random.uniform(k_u, (self.batch_size,), jnp.float32)
    g, d = state.g, state.d
    if self.update == "simultaneous":
      # One G forward shared by both losses; both gradients at the step's starting parameters.
      x_fake, g_vjp = jax.vjp(lambda q: self._generate(q, g.constants, z, p.level, alpha),
                              g.params)
      new_d, aux = self._d_update(d, x_real, jax.lax.stop_gradient(x_fake), u, p.level, alpha,
                                  lr)
      critic = self._critic(d.params, d.constants, p.level, alpha)
      loss_gen, dx = jax.value_and_grad(lambda x: self._g_loss(critic(x)))(x_fake)
      new_g = self._g_apply(g, g_vjp(dx)[0], lr)
    else:
      x_fake = jax.lax.stop_gradient(self._generate(g.params, g.constants, z, p.level, alpha))
      new_d, aux = self._d_update(d, x_real, x_fake, u, p.level, alpha, lr)
      z_g = self.sample_latent(k_zg, self.batch_size)
      if self.d_steps_per_g_step == 1:
        new_g, loss_gen = self._g_update(g, new_d, z_g, p.level, alpha, lr)
      else:
        new_g, loss_gen = jax.lax.cond(
            (state.step + 1) % self.d_steps_per_g_step == 0,
            lambda: self._g_update(g, new_d, z_g, p.level, alpha, lr),
            lambda: (g, jnp.zeros([], jnp.float32)))
    metrics = dict(aux, loss_gen=loss_gen, alpha=alpha,
                   lod=self.schedule.lod(phase, state.step), lr=jnp.asarray(lr, jnp.float32))
    return state.replace(step=state.step + 1, g=new_g, d=new_d), metrics

  # ------------------------------------------------------------------------------------------
  def _generate_full(self, params, constants, z, step, *, phase: int) -> jax.Array:
    p = self.schedule.phases[phase]
    x = self._generate(params, constants, z, p.level, self.schedule.alpha(phase, step))
    for _ in range(self.full_level - p.level):
      x = layers.upsample_nearest(x)
    return x

  def generate(self, state: TrainState, z: jax.Array, use_ema: bool = True) -> jax.Array:
    """Full-resolution samples of the phase the state is in (its next step's level and alpha),
    from G's EMA when it exists and `use_ema`; lower levels are nearest-upsampled."""
    g = state.g
    params = g.ema if (use_ema and g.ema is not None) else g.params
    starts = self.schedule.phase_starts
    if not starts:
      return self._generate_full(params, g.constants, z, state.step, phase=0)
    phase = jnp.searchsorted(jnp.asarray(starts), state.step, side="right")
    branches = [functools.partial(self._generate_full, phase=i)
                for i in range(len(self.schedule.phases))]
    return jax.lax.switch(phase, branches, params, g.constants, z, state.step)


def build(config: ml_collections.ConfigDict, dataset) -> base.Experiment:
  """The progressive experiment: unlabeled training images (in memory, or an image folder
  streamed from disk), a fresh shuffle per epoch."""
  d, l, t, o, s = config.data, config.loss, config.train, config.optim, config.schedule
  h, w, c = dataset.image_shape
  if h != w:
    raise ValueError(f"progressive growing needs square images, got {h}x{w}")
  growth.level_of(h)   # clear error for non-power-of-two sides (e.g. MNIST 28: pad to 32)
  streams = {"x": ("x", "idx")}
  num_train, init, arrays, feeder = base.unlabeled_images(config, dataset, streams)
  steps = base.steps_per_epoch(t, num_train)
  generator, discriminator = models.build(config.model, 1, dataset.image_shape)
  g_tx, d_tx, lr_schedule = base.optimizers(config)
  schedule = growth.GrowthSchedule.from_kimg(
      h, s.initial_resolution, s.stabilize_kimg, s.fade_kimg, t.batch_size,
      o.get("reset", "phase"))
  variant = ProgressiveGAN(
      generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      lr_schedule=lr_schedule, steps_per_epoch=steps, schedule=schedule,
      latent_dim=config.model.z_dim, latent_dist=config.model.z_dist, batch_size=t.batch_size,
      loss=l.kind, gp_target=l.get("gp_target", 1.0), gp_weight=l.get("gp_weight", 10.0),
      drift=l.get("drift", 0.001), label_smoothing=l.get("label_smoothing", 1.0),
      update=t.get("update", "simultaneous"), d_steps_per_g_step=t.get("d_steps_per_g_step", 1),
      g_ema_rate=o.get("g_ema_rate", 0.001), fade_reals=d.get("fade_reals", True),
      compute_dtype=base.compute_dtype(config))

  def epoch_plan(epoch: int) -> dict[str, np.ndarray]:
    plan = plans.gan_epoch_plan(num_train, t.batch_size, config.seed, epoch, ("idx",))
    return {k: v[:steps] for k, v in plan.items()}

  return base.assemble(config, dataset, variant, arrays=arrays, streams=streams,
                       epoch_plan=epoch_plan, steps=steps, init=init, offered=EVALUATORS,
                       feeder=feeder)
