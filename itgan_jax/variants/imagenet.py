"""ImageNet 128x128 game of openai/improved-gan `imagenet/` (`config.variant = "imagenet"`).

One iteration (official `build_model.py` + `train.py`, one `sess.run` of both optimizers):
  x_gen = G(z), z ~ U(-1, 1)^z_dim, with fresh per-pixel noises;
  (class logits, d) = D(concat(x_real, x_gen)), one call on the joint batch (BN-cross and the
  joint minibatch features see both halves), d = LSE(class logits) - fake logit;
  D loss = E_real KL(alpha || sigmoid(d)) + E_fake [-log(1 - sigmoid(d))]
           + class_weight * E_real CE(softmax over the K + 1 logits, label)
    (one-sided label smoothing alpha = 0.75, written as sigmoid cross-entropy minus the target
    entropy; class weight 1; the fake term is the plain sigmoid cross-entropy with target 0);
  G loss = E_fake KL(0.375 || sigmoid(d)) (`generator_target_prob = .75 / 2`);
  both gradients come from this one forward pass and both players are updated simultaneously
  with Adam (lr 4e-4, beta1 0.5; TF Adam: eps 1e-8 outside the square root).
Metrics: the three D terms, their sum, G's loss, mean D(x) on each half, the top-1 error of the
class logits on the real half (official running `error_rate`) and the learning rate.

Data: a streaming dataset (`data/image_folder.py`: an image folder or tfds `imagenet2012`), fed
by `train/streaming.py` (per-process decoding, prefetch one chunk ahead); the batch holds `x`
(uint8 -> [-1, 1] inside the step) and `y` (labels).
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
from itgan_jax.data import image_folder
from itgan_jax.data import preprocess
from itgan_jax.data import ssl as plans
from itgan_jax.losses import gan as gan_losses
from itgan_jax.models.imagenet import gan_logit
from itgan_jax.train import players, streaming
from itgan_jax.train.state import TrainState
from itgan_jax.variants import base

EVALUATORS = ("sample_grid",)
STREAMS = {"x": ("x", "idx"), "y": ("y", "idx")}


def _bernoulli_kl(target: float, logit: jax.Array) -> jax.Array:
  """Official `sigmoid_kl_with_logits`: sigmoid CE with a constant target minus its entropy."""
  ce = target * jax.nn.softplus(-logit) + (1.0 - target) * jax.nn.softplus(logit)
  entropy = 0.0 if target in (0.0, 1.0) else -(target * np.log(target)
                                                + (1.0 - target) * np.log(1.0 - target))
  return ce - entropy


def imagenet_losses(class_logits: jax.Array, labels: jax.Array, *, real_target: float = 0.75,
                    generator_target: float = 0.375, class_weight: float = 1.0
                    ) -> dict[str, jax.Array]:
  """The official losses from D's joint-batch logits (first n rows real, last n fake).

  Returns loss_d (= loss_d_real + loss_d_fake + loss_d_class), its terms, loss_gen, the mean
  D(x) of each half (d_real, d_fake) and class_error (top-1 on the real half).
  """
  n = labels.shape[0]
  if class_logits.shape[0] != 2 * n:
    raise ValueError(f"joint-batch logits of {class_logits.shape[0]} rows for {n} labels; "
                     "expected real rows followed by as many fake rows")
  d = gan_logit(class_logits)
  d_real, d_fake = d[:n], d[n:]
  real_logits = class_logits[:n]
  loss_real = jnp.mean(_bernoulli_kl(real_target, d_real))
  loss_fake = jnp.mean(jax.nn.softplus(d_fake))
  loss_class = class_weight * jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(real_logits, labels))
  return dict(
      loss_d=loss_real + loss_fake + loss_class, loss_d_real=loss_real, loss_d_fake=loss_fake,
      loss_d_class=loss_class, loss_gen=jnp.mean(_bernoulli_kl(generator_target, d_fake)),
      d_real=jnp.mean(jax.nn.sigmoid(d_real)), d_fake=jnp.mean(jax.nn.sigmoid(d_fake)),
      class_error=1.0 - jnp.mean((jnp.argmax(real_logits, axis=1) == labels)
                                 .astype(jnp.float32)))


def row_keys(z: jax.Array) -> jax.Array:
  """One PRNG key per latent row, a function of that row's bits only (samples' per-pixel noise)."""
  bits = jax.lax.bitcast_convert_type(z.astype(jnp.float32), jnp.uint32)
  # A multiplicative hash over the row (wrapping uint32 arithmetic), then the key.
  weights = (jnp.arange(z.shape[1], dtype=jnp.uint32) * jnp.uint32(2654435761)) | jnp.uint32(1)
  seeds = jnp.sum(bits * weights[None], axis=1, dtype=jnp.uint32)
  return jax.vmap(jax.random.PRNGKey)(seeds)


@dataclasses.dataclass(frozen=True)
class ImagenetGAN(base.VariantBase):
  """The official ImageNet game: `init` and a pure `train_step(state, batch, rng)`.

  Attributes:
    generator, discriminator: `models.imagenet` modules (G needs a `noise` rng stream; D takes the
      joint batch and returns (K + 1 logits, features)).
    g_tx, d_tx: Adam directions (`optim.factory`); lr_schedule: per-epoch rate.
    steps_per_epoch, latent_dim, batch_size: as the other variants (batch = real rows = fake rows).
    real_target: D's real target alpha (official 0.75); generator_target: G's KL target (0.375);
    class_weight: weight of the class cross-entropy (official 1).
    compute_dtype: 'float32' or 'bfloat16', the networks' forward passes
      (`config.precision.compute_dtype`; parameters, Adam state and losses stay float32).
  """
  generator: nn.Module
  discriminator: nn.Module
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  lr_schedule: Callable[[jax.Array], jax.Array]
  steps_per_epoch: int
  latent_dim: int
  batch_size: int
  real_target: float = 0.75
  generator_target: float = 0.375
  class_weight: float = 1.0
  latent_dist: str = "uniform_pm1"
  compute_dtype: str = "float32"

  metric_keys = ("loss_d", "loss_d_real", "loss_d_fake", "loss_d_class", "loss_gen", "d_real",
                 "d_fake", "class_error", "lr")
  progress_keys = ("loss_d", "loss_gen", "class_error")
  curve_keys = ("loss_d", "loss_d_class", "loss_gen", "d_real", "d_fake", "class_error")

  def __post_init__(self):
    gan_losses.check_label_smoothing(self.real_target)
    gan_losses.make_generator_loss("kl_target", self.generator_target)
    if self.class_weight < 0:
      raise ValueError(f"loss.class_weight={self.class_weight} must be >= 0 (official 1)")

  def init(self, rng: jax.Array, x_init: jax.Array) -> TrainState:
    """Both players: G on a latent batch (its reference z and noises drawn into `vbn_ref`), D on
    the joint batch `x_init` (an even number of rows)."""
    k_g, k_ref, k_noise, k_z, k_d, k_dn, k_run = jax.random.split(rng, 7)
    z = self.sample_latent(k_z, self.batch_size)
    g = players.init_player(self.generator, {"params": k_g, "vbn": k_ref, "noise": k_noise}, z,
                            self.g_tx, train=True)
    d = players.init_player(self.discriminator, {"params": k_d, "noise": k_dn}, x_init,
                            self.d_tx, train=True)
    return TrainState(step=jnp.zeros([], jnp.int32), rng=k_run, g=g, d=d)

  def losses(self, d_params, g_params, state: TrainState, batch: dict, rng: jax.Array):
    """(loss_d, loss_gen) and the metrics of one forward pass of G and D on the joint batch."""
    k_z, k_g, k_d = jax.random.split(rng, 3)
    z = self.sample_latent(k_z, self.batch_size)
    x_gen = self.apply_network(self.generator, {"params": g_params, **state.g.constants}, z,
                               train=True, rngs={"noise": k_g})
    joint = jnp.concatenate([batch["x"], x_gen.astype(batch["x"].dtype)])
    logits, _ = self.apply_network(self.discriminator, {"params": d_params, **state.d.constants},
                                   joint, train=True, rngs={"noise": k_d})
    out = imagenet_losses(logits, batch["y"], real_target=self.real_target,
                          generator_target=self.generator_target, class_weight=self.class_weight)
    return (out["loss_d"], out["loss_gen"]), out

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One forward pass; D's gradient of loss_d and G's of loss_gen; simultaneous Adam steps."""
    lr = self.lr_schedule(state.step // self.steps_per_epoch)
    (loss_d, loss_g), vjp, metrics = jax.vjp(
        lambda dp, gp: self.losses(dp, gp, state, batch, rng), state.d.params, state.g.params,
        has_aux=True)
    one, zero = jnp.ones_like(loss_d), jnp.zeros_like(loss_d)
    d_grads, _ = vjp((one, zero))   # the unused G part is removed by XLA
    _, g_grads = vjp((zero, one))
    d = players.apply_updates(state.d, self.d_tx, d_grads, lr)
    g = players.apply_updates(state.g, self.g_tx, g_grads, lr)
    metrics = dict(metrics, lr=jnp.asarray(lr, jnp.float32))
    return state.replace(step=state.step + 1, g=g, d=d), metrics

  def generate(self, state: TrainState, z: jax.Array) -> jax.Array:
    """Samples for latents `z`; each row's per-pixel noises are drawn from a key hashed from that
    row (`row_keys`), so a fixed z gives a fixed image."""
    return self.apply_network(self.generator, state.g.variables(), z, train=True,
                              row_keys=row_keys(z))


def _check_keys(config: ml_collections.ConfigDict) -> None:
  d = config.data
  init = d.init_size
  if isinstance(init, bool) or not isinstance(init, int) or init < 2 or init % 2:
    raise ValueError(f"config.data.init_size={init!r} must be an even integer >= 2 (D is "
                     "initialised on a joint real||fake batch)")
  if d.scale != "tanh":
    raise ValueError(f"config.data.scale={d.scale!r}: the imagenet game works on [-1, 1] images "
                     "(official x * 2 / 255 - 1); set data.scale='tanh'")


def build(config: ml_collections.ConfigDict, dataset) -> base.Experiment:
  """The ImageNet experiment on a streaming dataset (one pass over it per epoch)."""
  if not isinstance(dataset, image_folder.StreamingDataset):
    raise ValueError(f"the imagenet variant reads a streaming dataset (data.name one of "
                     f"{image_folder.NAMES}), got {type(dataset).__name__} "
                     f"{getattr(dataset, 'name', '')!r}")
  _check_keys(config)
  d, l, t = config.data, config.loss, config.train
  num_train = dataset.num_train
  steps = base.steps_per_epoch(t, num_train)
  generator, discriminator = models.build(config.model, dataset.num_classes, dataset.image_shape)
  g_tx, d_tx, lr_schedule = base.optimizers(config)
  if config.model.z_dist != "uniform_pm1":
    raise ValueError(f"model.z_dist={config.model.z_dist!r}: the imagenet G draws z ~ U(-1, 1); "
                     "set model.z_dist='uniform_pm1'")
  variant = ImagenetGAN(
      generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      lr_schedule=lr_schedule, steps_per_epoch=steps, latent_dim=config.model.z_dim,
      batch_size=t.batch_size, real_target=l.label_smoothing, generator_target=l.kl_target,
      class_weight=l.class_weight, compute_dtype=base.compute_dtype(config))
  init = preprocess.to_float(image_folder.first_images(dataset, d.init_size, config.seed), d.scale)

  def epoch_plan(epoch: int) -> dict[str, np.ndarray]:
    plan = plans.gan_epoch_plan(num_train, t.batch_size, config.seed, epoch, ("idx",))
    return {k: v[:steps] for k, v in plan.items()}

  feeder = streaming.StreamingFeeder({"x": dataset}, {"y": dataset.train_y}, STREAMS, d.scale,
                                     num_workers=d.num_workers, prefetch=d.prefetch)
  return base.assemble(config, dataset, variant, arrays={}, streams=STREAMS,
                       epoch_plan=epoch_plan, steps=steps, init=init, offered=EVALUATORS,
                       feeder=feeder)
