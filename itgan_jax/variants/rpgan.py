"""RP-GAN: one generator against K discriminators on fixed random projections (`variant='rpgan'`).

Neyshabur, Bhojanapalli & Chakrabarti 2017, "Stabilizing GAN Training with Multiple Random
Projections"; the official loop `ayanc/rpgan train.py` (papers.md C.4, next_features.md 1.2, 7).
D_k sees P_k x, the k-th fixed random projection of the image (`models/rpgan.py`); with
`model.num_projections = 0` there is no projection and one D on the full image (the official
single-discriminator baseline `baseline_train.py` + `disc0.py`).

Losses (per discriminator k, d = D_k(P_k .) logits):
  D_k: 0.5 E[KL(alpha || sigmoid d(x))] + 0.5 E[softplus(d(G(z)))] with one-sided label smoothing
       alpha (`loss.label_smoothing`, 1 = none: the official (softplus(-d(x)) + softplus(d(G z)))/2);
  G:   (1/K) sum_k E[softplus(-d_k(G(z)))] (official `gloss = of2r / K`, non-saturating;
       `loss.generator` may also be 'minimax' or 'kl_target').
One iteration (the official order):
  1. G step: fresh z, ONE forward pass of G, the loss through all K discriminators, one Adam step
     of G (the official loop accumulates dL/dG(z) over k, then back-propagates once: the same
     gradient);
  2. D step: a fresh z and the UPDATED G (a new forward pass), one real batch; every D_k one step
     of its own Adam on the same (real, fake) pair.
The K discriminators' parameters and Adam states are one stacked pytree (leading K axis); the
optimizer is `jax.vmap`ped over K, so no transform can couple them (a global-norm clip, say,
would be per discriminator) and D_k's update depends on D_k's gradient only. Evaluation
strategy: `model.k_strategy` (docs/rpgan.md); with 'shard' the loop also keeps D's stacked
leaves split along K over the devices (`state_sharding`).

Metrics: loss_d, loss_gen (means over K), loss_d_min / loss_d_max, loss_gen_min / loss_gen_max,
d_real / d_fake (mean sigmoid over K and the batch), lr, and, when K <= `log.per_discriminator_max`
(default 48: every official preset), each discriminator's `loss_d_kNN` and `loss_gen_kNN` (the
official per-discriminator log line `L00=...` prints the latter).

Data: images in [-1, 1] (`data.scale='tanh'`); in memory (MNIST, CIFAR-10) or streamed from an
image folder (faces, dogs: `data/image_folder.py`). `data.pad_to` pads real images with the
background value to a power-of-two side (MNIST 28 -> 32; G makes 32x32 and samples are cropped
back); `data.upsample` enlarges real images by an integer factor (bicubic) inside the step
(CIFAR-10 at 64x64 as Albuquerque et al. 2019; samples are box-downsampled back for the
evaluators). `data.crop='random'` (image folders, dog12) cuts a random 128x128 window of the
short-side-129 resize per use (official `real.py`), from a salt in the epoch plan. G's EMA
(`optim.g_ema_rate`) and historical averaging (`optim.historical_averaging_*`, per
discriminator) come from the config.
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
from itgan_jax.models import rpgan as rp
from itgan_jax.train import players
from itgan_jax.train import precision as precision_lib
from itgan_jax.train import sharding as sharding_lib
from itgan_jax.train.state import Player, TrainState
from itgan_jax.variants import base

EVALUATORS = ("sample_grid", "image_metrics")
STREAMS = {"x": ("x", "idx")}
# Random crops (image folders with data.crop='random', dog12): each row's window from a salt.
CROP_STREAMS = {"x": ("x", "idx", "crop")}
SUMMARY_KEYS = ("loss_d", "loss_d_min", "loss_d_max", "loss_gen", "loss_gen_min", "loss_gen_max",
                "d_real", "d_fake", "lr")


def per_discriminator_key(name: str, k: int) -> str:
  """The metric key of discriminator k's value, e.g. `loss_d_k07`."""
  return f"{name}_k{k:02d}"


@dataclasses.dataclass(frozen=True)
class RandomProjectionGAN(base.VariantBase):
  """RP-GAN game (module docstring): `init` and a pure `train_step(state, batch, rng)`.

  Attributes:
    generator: `RPGenerator`, z -> images at the training resolution.
    discriminators: the `DiscriminatorStack` of K `RPDiscriminator`s.
    g_tx, d_tx: optax directions without the learning rate (`optim.factory`); d_tx is that of ONE
      discriminator, applied under `jax.vmap` over K.
    lr_schedule, steps_per_epoch: per-epoch learning rate.
    latent_dim, latent_dist, batch_size: G's input and the batch size of both steps.
    train_shape: (S, S, C) of the images the networks see; data_shape: the dataset's.
    projection_stride: s of the projections (bank: `projection_bank`).
    projection_bank: HWIO (f, f, C, K) float32 filters, or None (the full-image baseline); copied
      into the state at init (`state.d.constants['projection']`), which every step then reads, so
      a checkpoint carries the projections of its run.
    generator_loss, label_smoothing, kl_target: the losses (module docstring).
    g_ema_rate: rate of G's EMA (0 = none); samples use it when it exists.
    pad, upsample, pad_value: real image -> training image (`data.pad_to`, `data.upsample`).
    per_discriminator_max: log each discriminator's losses when K <= this.
    compute_dtype: forward passes in float32 or bfloat16 (`precision.compute_dtype`).
  """
  generator: nn.Module
  discriminators: rp.DiscriminatorStack
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  lr_schedule: Callable[[jax.Array], jax.Array]
  steps_per_epoch: int
  latent_dim: int
  latent_dist: str
  batch_size: int
  train_shape: tuple[int, int, int]
  data_shape: tuple[int, int, int]
  projection_stride: int = 2
  projection_bank: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
  generator_loss: str = "non_saturating"
  label_smoothing: float = 1.0
  kl_target: float = 0.375
  g_ema_rate: float = 0.0
  pad: int = 0
  upsample: int = 1
  pad_value: float = -1.0
  per_discriminator_max: int = 48
  compute_dtype: str = "float32"

  progress_keys = ("loss_d", "loss_gen")
  curve_keys = ("loss_d", "loss_gen", "loss_d_min", "loss_d_max", "d_real", "d_fake")
  # The projections are drawn from config.seed: `train.num_seeds` (which runs member 0's variant
  # for every seed) would give every seed member 0's projections; `seed_vmap.stack` refuses.
  seed_dependent = True

  def __post_init__(self):
    if self.generator_loss not in gan_losses.GENERATOR_KINDS:
      raise ValueError(f"loss.generator={self.generator_loss!r}: the rpgan variant offers "
                       f"{gan_losses.GENERATOR_KINDS} (official: 'non_saturating')")
    if not 0.0 <= self.g_ema_rate <= 1.0:
      raise ValueError(f"optim.g_ema_rate={self.g_ema_rate} must be in [0, 1] (0 = no G EMA)")
    gan_losses.check_label_smoothing(self.label_smoothing)
    if self.projection_bank is not None and self.projection_bank.shape[-1] != self.num_discriminators:
      raise ValueError(f"{self.projection_bank.shape[-1]} projections for "
                       f"{self.num_discriminators} discriminators")

  @property
  def num_discriminators(self) -> int:
    return self.discriminators.num

  @property
  def discriminator(self) -> nn.Module:
    """One D_k (the stack's module)."""
    return self.discriminators.module

  @property
  def metric_keys(self) -> tuple[str, ...]:
    keys = SUMMARY_KEYS
    if self.num_discriminators <= self.per_discriminator_max:
      keys += tuple(per_discriminator_key(name, k) for name in ("loss_d", "loss_gen")
                    for k in range(self.num_discriminators))
    return keys

  @property
  def d_input_shape(self) -> tuple[int, int, int]:
    """The shape of D_k's input: P_k x (S', S', 1), or the full image for the baseline."""
    if self.projection_bank is None:
      return self.train_shape
    f = self.projection_bank.shape[0]
    side = rp.projected_side(self.train_shape[0], f, self.projection_stride)
    return (side, side, 1)

  # ------------------------------------------------------------------------------------------
  def init(self, rng: jax.Array, x_init: jax.Array) -> TrainState:
    """G on a latent batch; K independent D_k (one key each); the projections into D's constants."""
    del x_init  # no data-dependent init in RP-GAN (shapes come from the config)
    k_g, k_z, k_d, k_run = jax.random.split(rng, 4)
    z = self.sample_latent(k_z, self.batch_size)
    g = players.init_player(self.generator, {"params": k_g}, z, self.g_tx,
                            ema="copy" if self.g_ema_rate else None, train=True)
    d_params = self.discriminators.init(k_d, self.d_input_shape)
    constants = ({} if self.projection_bank is None
                 else {"projection": jnp.asarray(self.projection_bank, jnp.float32)})
    d = Player(d_params, constants, jax.vmap(self.d_tx.init)(d_params), None)
    return TrainState(step=jnp.zeros([], jnp.int32), rng=k_run, g=g, d=d)

  def state_sharding(self, abstract_state: TrainState, mesh):
    """Placement of the state (the loop's hook, `train.contract.Variant`): with
    `k_strategy='shard'`, D's stacked parameters and optimizer state (every leaf has the leading
    K axis: Adam's moments and its count are vmapped over K) split along K over the mesh axis, so
    each device holds the K / n discriminators it evaluates; G, its optimizer, the projection
    bank, step and rng replicated. Other strategies: None (everything replicated)."""
    stack = self.discriminators
    if stack.strategy != "shard":
      return None
    if mesh != stack.mesh:
      raise ValueError(f"k_strategy='shard': the loop's mesh {mesh} is not the mesh the "
                       f"discriminators were built for ({stack.mesh}); build the experiment with "
                       "the same config.num_devices")
    repl = sharding_lib.replicated(mesh)
    placed = jax.tree.map(lambda _: repl, abstract_state)
    d = abstract_state.d
    return placed.replace(d=placed.d.replace(params=stack.param_sharding(d.params, mesh),
                                             opt_state=stack.param_sharding(d.opt_state, mesh)))

  # --- images --------------------------------------------------------------------------------
  def to_train(self, x: jax.Array) -> jax.Array:
    """Dataset-resolution model-range images -> the networks' resolution (pad, upsample)."""
    if self.pad:
      p = self.pad
      x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=self.pad_value)
    if self.upsample > 1:
      n, h, w, c = x.shape
      x = jax.image.resize(x, (n, h * self.upsample, w * self.upsample, c), "cubic")
    return x

  def to_data(self, x: jax.Array) -> jax.Array:
    """G's images -> the dataset's resolution (box downsampling, the padding cropped off)."""
    if self.upsample > 1:
      n, h, w, c = x.shape
      u = self.upsample
      x = x.reshape(n, h // u, u, w // u, u, c).mean(axis=(2, 4))
    if self.pad:
      p = self.pad
      x = x[:, p:x.shape[1] - p, p:x.shape[2] - p, :]
    return x

  def d_inputs(self, constants: dict, x: jax.Array) -> jax.Array:
    """Images (N, S, S, C) -> the K discriminators' inputs (K, N, S', S', 1): all K projections
    as one convolution with K output channels; the baseline's (1, N, S, S, C) is the image."""
    bank = constants.get("projection")
    if bank is None:
      return x[None]
    projected = rp.project(x, bank, self.projection_stride)  # (N, S', S', K)
    return jnp.moveaxis(projected, -1, 0)[..., None]

  def discriminate_all(self, d_params, d_constants: dict, x: jax.Array) -> jax.Array:
    """Logits (K, N) of every D_k on its projection of the training-resolution images `x`."""
    if self.compute_dtype != "float32":
      d_params = precision_lib.cast_floating(d_params, self.compute_dtype)
      x = precision_lib.cast_floating(x, self.compute_dtype)
    logits = self.discriminators.apply(d_params, self.d_inputs(d_constants, x))
    return logits.astype(jnp.float32)

  # --- the two steps -------------------------------------------------------------------------
  def discriminator_losses(self, logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
    """(K,) losses of the K discriminators from their (K, N) logits."""
    return jax.vmap(lambda r, f: gan_losses.discriminator_gan_loss(
        r, f, real_target=self.label_smoothing))(logits_real, logits_fake)

  def generator_losses(self, logits_fake: jax.Array) -> jax.Array:
    """(K,) G losses against each discriminator; G's objective is their mean."""
    return jax.vmap(lambda f: gan_losses.generator_loss(f, kind=self.generator_loss,
                                                        target=self.kl_target))(logits_fake)

  def discriminator_step(self, d: Player, grads, lr) -> Player:
    """Each D_k one step of its own optimizer: the transform vmapped over the K axis."""
    updates, opt_state = jax.vmap(self.d_tx.update)(grads, d.opt_state, d.params)
    params = jax.tree.map(lambda p, u: p - lr * u, d.params, updates)
    return d.replace(params=params, opt_state=opt_state)

  def generator_update(self, g: Player, d: Player, rng: jax.Array, lr
                       ) -> tuple[Player, jax.Array]:
    """One G step: fresh z, one G forward pass, the mean loss over the K discriminators.
    Returns the new G and the (K,) losses (before the step)."""
    def loss_fn(params):
      x_gen = self.generate_batch(params, g.constants, rng)
      per_k = self.generator_losses(self.discriminate_all(d.params, d.constants, x_gen))
      return jnp.mean(per_k), per_k

    (_, per_k), grads = jax.value_and_grad(loss_fn, has_aux=True)(g.params)
    new = players.apply_updates(g, self.g_tx, grads, lr)
    if self.g_ema_rate:
      new = players.update_ema(new, new.params, self.g_ema_rate)
    return new, per_k

  def discriminator_update(self, g: Player, d: Player, x_real: jax.Array, rng: jax.Array, lr
                           ) -> tuple[Player, dict]:
    """Every D_k one step on the real batch and a batch of `g` (fresh z); the (K,) losses and the
    mean D outputs (before the step)."""
    x_gen = jax.lax.stop_gradient(self.generate_batch(g.params, g.constants, rng))
    x = jnp.concatenate([self.to_train(x_real), x_gen])  # no batch statistics in D: one call

    def loss_fn(params):
      logits_real, logits_fake = jnp.split(self.discriminate_all(params, d.constants, x), 2,
                                           axis=1)
      per_k = self.discriminator_losses(logits_real, logits_fake)
      # The sum: D_k's parameters enter loss k only, so this is each D_k's own gradient.
      return jnp.sum(per_k), (per_k, logits_real, logits_fake)

    (_, (per_k, logits_real, logits_fake)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(d.params)
    aux = dict(losses=per_k, d_real=jnp.mean(jax.nn.sigmoid(logits_real)),
               d_fake=jnp.mean(jax.nn.sigmoid(logits_fake)))
    return self.discriminator_step(d, grads, lr), aux

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    """The G step (fresh z), then the D step (fresh z, the updated G, `batch['x']`)."""
    lr = self.lr_schedule(state.step // self.steps_per_epoch)
    k_g, k_d = jax.random.split(rng)
    g, g_losses = self.generator_update(state.g, state.d, k_g, lr)
    d, aux = self.discriminator_update(g, state.d, batch["x"], k_d, lr)
    metrics = self.summarise(aux["losses"], g_losses)
    metrics.update(d_real=aux["d_real"], d_fake=aux["d_fake"], lr=jnp.asarray(lr, jnp.float32))
    return state.replace(step=state.step + 1, g=g, d=d), metrics

  def summarise(self, d_losses: jax.Array, g_losses: jax.Array) -> dict[str, jax.Array]:
    """Means / minima / maxima over K, and each k's losses when K is small enough."""
    out = {}
    for name, values in (("loss_d", d_losses), ("loss_gen", g_losses)):
      out[name] = jnp.mean(values)
      out[name + "_min"] = jnp.min(values)
      out[name + "_max"] = jnp.max(values)
      if self.num_discriminators <= self.per_discriminator_max:
        out.update({per_discriminator_key(name, k): values[k]
                    for k in range(self.num_discriminators)})
    return out

  # ------------------------------------------------------------------------------------------
  def generate(self, state: TrainState, z: jax.Array, use_ema: bool = True) -> jax.Array:
    """Samples at the dataset's resolution: G's EMA when it exists (and `use_ema`), else G, with
    batch statistics (as the official `sample.py`)."""
    g = state.g
    x = self.apply_network(self.generator, g.variables(use_ema=use_ema and g.ema is not None),
                           z, train=True)
    return self.to_data(x)


# ------------------------------------------------------------------------------------------------
def _int(cfg, key: str, value, minimum: int, allow_none: bool = False):
  if value is None and allow_none:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"config.{cfg}.{key}={value!r} must be an integer >= {minimum}"
                     + (" or None" if allow_none else ""))
  return int(value)


def training_shape(data: ml_collections.ConfigDict, data_shape) -> tuple[tuple[int, int, int],
                                                                         int, int]:
  """((S, S, C) the networks see, pad per side, upsample factor) from `data.pad_to` and
  `data.upsample`."""
  h, w, c = data_shape
  pad_to = _int("data", "pad_to", data.get("pad_to"), 1, allow_none=True)
  upsample = _int("data", "upsample", data.get("upsample", 1), 1)
  pad = 0
  if pad_to is not None and pad_to != h:
    if h != w or pad_to < h or (pad_to - h) % 2:
      raise ValueError(f"data.pad_to={pad_to} must be >= the image side {h} (square images) and "
                       "differ from it by an even number (symmetric padding), or None")
    pad = (pad_to - h) // 2
  side = (h + 2 * pad) * upsample
  return (side, side, c), pad, upsample


def projection_bank(config: ml_collections.ConfigDict, train_shape) -> tuple[np.ndarray | None,
                                                                              int]:
  """(HWIO bank or None, stride) of `config.model` (module docstring of models/rpgan.py)."""
  m = config.model
  num = _int("model", "num_projections", m.num_projections, 0)
  side, channels = train_shape[0], train_shape[2]
  if num == 0:
    if m.get("projection_file"):
      raise ValueError("model.projection_file is set but model.num_projections=0 (the "
                       "full-image baseline); set num_projections to the file's K or drop the file")
    return None, 1
  if m.get("projection_file"):
    bank, stride = rp.load_projections(m.projection_file)
    if bank.shape[-1] != num:
      raise ValueError(f"model.projection_file holds {bank.shape[-1]} projections but "
                       f"model.num_projections={num}")
    if bank.shape[2] != channels:
      raise ValueError(f"model.projection_file's filters take {bank.shape[2]} channels, the "
                       f"images have {channels}")
  else:
    size = _int("model", "projection_size", m.projection_size, 1)
    stride = _int("model", "projection_stride", m.projection_stride, 1)
    seed = m.get("projection_seed")
    seed = config.seed if seed is None else _int("model", "projection_seed", seed, 0)
    if size < stride:
      raise ValueError(f"model.projection_size={size} must be >= model.projection_stride="
                       f"{stride} (official 8 and 2)")
    if size > side:
      raise ValueError(f"model.projection_size={size} is larger than the {side}x{side} training "
                       "images; choose a smaller filter")
    bank = rp.draw_projections(seed, num, size, channels)
  size = bank.shape[0]
  if size > side:
    raise ValueError(f"the {size}x{size} projection filters are larger than the {side}x{side} "
                     "training images")
  projected = rp.projected_side(side, size, stride)
  try:
    rp.discriminator_layers(projected)
  except ValueError:
    raise ValueError(f"{side}x{side} images projected by {size}x{size} stride-{stride} filters "
                     f"(padding {rp.projection_padding(size, stride)}) are {projected}x{projected}; "
                     "the discriminators need a power-of-two side: change model.projection_size/"
                     "projection_stride or data.pad_to") from None
  return bank, stride


def build(config: ml_collections.ConfigDict, dataset) -> base.Experiment:
  """The RP-GAN experiment on an in-memory or streaming (image folder) dataset."""
  d, l, t, o, m = config.data, config.loss, config.train, config.optim, config.model
  if m.name != "rpgan":
    raise ValueError(f"config.model.name={m.name!r}: the rpgan variant trains the rpgan model "
                     "family (set model.name='rpgan')")
  if l.get("generator", "non_saturating") not in gan_losses.GENERATOR_KINDS:
    raise ValueError(f"loss.generator={l.generator!r}: the rpgan variant offers "
                     f"{gan_losses.GENERATOR_KINDS}")
  streamed = isinstance(dataset, image_folder.StreamingDataset)
  random_crop = streamed and d.get("crop", "center") == "random"
  batch_streams = CROP_STREAMS if random_crop else STREAMS
  num_train, init, arrays, feeder = base.unlabeled_images(config, dataset, batch_streams)
  steps = base.steps_per_epoch(t, num_train)
  data_shape = tuple(dataset.image_shape)
  train_shape, pad, upsample = training_shape(d, data_shape)
  if streamed and (pad or upsample > 1):
    raise ValueError("data.pad_to / data.upsample apply to in-memory datasets; an image folder "
                     "is decoded at data.image_size")
  side = train_shape[0]
  if side < 8 or side & (side - 1):
    raise ValueError(f"the rpgan networks need a power-of-two image side >= 8 (G doubles 4x4, "
                     f"D halves down to 2x2), the images are {side}x{side}: set data.pad_to "
                     "(e.g. 32 for MNIST's 28), data.upsample or data.image_size")
  generator, discriminator = models.build(m, 1, train_shape)
  bank, stride = projection_bank(config, train_shape)
  if bank is None:
    rp.discriminator_layers(train_shape[0])
  num = 1 if bank is None else bank.shape[-1]
  strategy = rp.resolve_strategy(m.get("k_strategy", "auto"), num)
  mesh = sharding_lib.make_mesh(config.get("num_devices")) if strategy == "shard" else None
  stack = rp.DiscriminatorStack(
      discriminator, num=num, strategy=strategy,
      map_batch_size=_int("model", "k_map_batch_size", m.get("k_map_batch_size", 1), 1),
      mesh=mesh, axis=sharding_lib.DATA_AXIS)
  g_tx, d_tx, lr_schedule = base.optimizers(config)
  variant = RandomProjectionGAN(
      generator=generator, discriminators=stack, g_tx=g_tx, d_tx=d_tx, lr_schedule=lr_schedule,
      steps_per_epoch=steps, latent_dim=m.z_dim, latent_dist=m.z_dist, batch_size=t.batch_size,
      train_shape=train_shape, data_shape=data_shape, projection_stride=stride,
      projection_bank=bank, generator_loss=l.get("generator", "non_saturating"),
      label_smoothing=l.get("label_smoothing", 1.0), kl_target=l.get("kl_target", 0.375),
      g_ema_rate=o.get("g_ema_rate", 0.0), pad=pad, upsample=upsample,
      pad_value=preprocess.value_range(d.scale)[0],
      per_discriminator_max=_int("log", "per_discriminator_max",
                                 config.log.get("per_discriminator_max", 48), 0),
      compute_dtype=base.compute_dtype(config))

  def epoch_plan(epoch: int) -> dict[str, np.ndarray]:
    plan = plans.gan_epoch_plan(num_train, t.batch_size, config.seed, epoch, ("idx",))
    if random_crop:  # one crop salt per row, deterministic in (seed, epoch)
      plan["crop"] = np.random.default_rng([config.seed, epoch, 1]).integers(
          0, 2**31 - 1, plan["idx"].shape).astype(np.int32)
    return {k: v[:steps] for k, v in plan.items()}

  return base.assemble(config, dataset, variant, arrays=arrays, streams=batch_streams,
                       epoch_plan=epoch_plan, steps=steps, init=init, offered=EVALUATORS,
                       feeder=feeder)
