"""What every variant shares: the contract's defaults and the assembly steps of `build`.

A variant module (`variants/<name>.py`) defines a frozen dataclass implementing
`train.contract.Variant` (deriving from `VariantBase` for the one-phase defaults) and a
`build(config, dataset) -> Experiment` that uses the helpers below for the parts every game
assembles the same way: the init batch, the epoch length, both players' optimizers and the
learning-rate schedule, the feeder of its batch streams, and its evaluators.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from itgan_jax import evaluators as evaluators_lib
from itgan_jax.data import preprocess
from itgan_jax.losses import feature_matching as fm_lib
from itgan_jax.losses import gan as gan_losses
from itgan_jax.models.latent import sample_latent
from itgan_jax.optim import factory
from itgan_jax.train import input_pipeline, players
from itgan_jax.train import precision as precision_lib
from itgan_jax.train.contract import Experiment, Variant
from itgan_jax.train.state import Player, TrainState

__all__ = ["Experiment", "Variant", "VariantBase", "DThenGVariant", "init_batch", "unlabeled_images", "steps_per_epoch",
           "optimizers", "assemble"]


class VariantBase:
  """Defaults of the contract for one-phase variants with a latent-driven generator, and the
  G-and-D mechanics every such game shares (initialise both players, a training-mode batch of G,
  a training-mode pass of D with its noise and dropout streams).

  Subclasses set `latent_dim`, `latent_dist` (see `models.latent.sample_latent`), `batch_size`,
  `generator`, `discriminator`, `g_tx` and `d_tx`, and may set `compute_dtype`
  (`config.precision.compute_dtype`): the dtype every forward pass of `apply_network` computes in
  (initialisation always runs in float32).
  """
  phase_starts: tuple[int, ...] = ()
  compute_dtype: str = precision_lib.DEFAULT_COMPUTE_DTYPE

  def apply_network(self, module, variables, x: jax.Array, **kwargs):
    """`module.apply(variables, x, **kwargs)` in the variant's compute dtype, outputs float32
    (`train.precision.apply`)."""
    return precision_lib.apply(module, variables, x, compute_dtype=self.compute_dtype, **kwargs)

  def init_players(self, rng: jax.Array, x_init: jax.Array, *, g_ema: str | None = None,
                   d_ema: str | None = None, d_kwargs: dict | None = None) -> TrainState:
    """Both players (G on a latent batch, D's data-dependent init on `x_init`) and the run's key;
    `g_ema` / `d_ema`: None, 'zeros' or 'copy' (`players.init_player`); `d_kwargs`: extra
    keywords of D's init call (e.g. the progressive D's starting `level`)."""
    k_g, k_gn, k_z, k_d, k_dn, k_dd, k_run = jax.random.split(rng, 7)
    z = self.sample_latent(k_z, self.batch_size)
    g = players.init_player(self.generator, {"params": k_g, "noise": k_gn, "vbn": k_gn}, z,
                            self.g_tx, ema=g_ema, train=True)
    d = players.init_player(self.discriminator, {"params": k_d, "noise": k_dn, "dropout": k_dd},
                            x_init, self.d_tx, ema=d_ema, train=True, **(d_kwargs or {}))
    return TrainState(step=jnp.zeros([], jnp.int32), rng=k_run, g=g, d=d)

  def generate_batch(self, g_params, g_constants, rng: jax.Array) -> jax.Array:
    """`batch_size` samples of G (training mode: batch statistics) for fresh latents."""
    z = self.sample_latent(rng, self.batch_size)
    return self.apply_network(self.generator, {"params": g_params, **g_constants}, z, train=True)

  def discriminate_train(self, d_params, d_constants, x: jax.Array, rng: jax.Array):
    """D's training-mode output on `x` (its input noise and dropout drawn from `rng`)."""
    k_noise, k_drop = jax.random.split(rng)
    return self.apply_network(self.discriminator, {"params": d_params, **d_constants}, x,
                              train=True, rngs={"noise": k_noise, "dropout": k_drop})

  def phase_train_step(self, phase: int):
    if phase:
      raise ValueError(f"{type(self).__name__} has one phase, asked for phase {phase}")
    return self.train_step

  def enter_phase(self, state, phase: int):
    raise ValueError(f"{type(self).__name__} has one phase; it cannot enter phase {phase}")

  def sample_latent(self, rng: jax.Array, num: int) -> jax.Array:
    return sample_latent(rng, num, self.latent_dim, self.latent_dist)


class DThenGVariant(VariantBase):
  """The Improved-GAN scripts' iteration: one D update, then `g_steps_per_d_step` G updates with
  fresh latents against the new D, G's loss either feature matching or a GAN loss of D's real
  logit (papers.md A.1-A.3).

  Subclasses implement `discriminator_update(state, batch, rng, lr) -> (d, metrics)` and
  `generator_update(g, d, batch, rng, lr) -> (g, loss_gen)` (with `generator_loss_and_grads`),
  and set `lr_schedule`, `steps_per_epoch`, `g_steps_per_d_step`, `generator_loss`, `fm_layer`,
  `fm_distance` and `kl_target`.
  """

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One D update, then the G updates (D's new parameters in G's loss); the learning rate is
    `lr_schedule(epoch)`."""
    lr = self.lr_schedule(state.step // self.steps_per_epoch)
    k_d, k_g = jax.random.split(rng)
    d, metrics = self.discriminator_update(state, batch, k_d, lr)
    g = state.g
    for i in range(self.g_steps_per_d_step):
      g, loss_gen = self.generator_update(g, d, batch, jax.random.fold_in(k_g, i), lr)
    metrics = dict(metrics, loss_gen=loss_gen, lr=jnp.asarray(lr, jnp.float32))
    return state.replace(step=state.step + 1, g=g, d=d), metrics

  def generator_loss_and_grads(self, g: Player, d: Player, x_real: jax.Array, rng: jax.Array,
                               real_logit: Callable[[jax.Array], jax.Array]):
    """G's loss against `d` on a fresh latent batch and its gradient, `(loss, grads)`.

    Feature matching: `fm_distance` between the `fm_layer` features of the real batch `x_real`
    (held fixed) and of G's batch (Salimans et al. Sec. 3.1; the CIFAR/SVHN code's
    `loss_gen = mean |E f(x) - E f(G(z))|`, papers.md A.5);
    otherwise the GAN loss `generator_loss` of `real_logit(D's logits)` (`x_real` unused).
    """
    k_z, k_real, k_gen = jax.random.split(rng, 3)
    if self.generator_loss == "feature_matching":
      _, feats_real = self.discriminate_train(d.params, d.constants, x_real, k_real)
      feat_real = jax.lax.stop_gradient(feats_real[self.fm_layer])

    def loss_fn(params):
      x_gen = self.generate_batch(params, g.constants, k_z)
      logits, feats_gen = self.discriminate_train(d.params, d.constants, x_gen, k_gen)
      if self.generator_loss == "feature_matching":
        return fm_lib.feature_matching_loss(feat_real, feats_gen[self.fm_layer],
                                            distance=self.fm_distance)
      return gan_losses.generator_loss(real_logit(logits), kind=self.generator_loss,
                                       target=self.kl_target)

    return jax.value_and_grad(loss_fn)(g.params)


def init_batch(dataset, size: int, seed: int, scale: str) -> np.ndarray:
  """The data-dependent-init batch: the first `size` images after `RandomState(seed)`'s
  permutation of the training set (official `trainx[:500]` after the seed_data permutation),
  as model-range float32."""
  num_train = dataset.train_x.shape[0]
  if not 1 <= size <= num_train:
    raise ValueError(f"config.data.init_size={size} must be in [1, {num_train}] (the "
                     "data-dependent init batch, official 500)")
  idx = np.random.RandomState(seed).permutation(num_train)[:size]
  return preprocess.to_float(dataset.train_x[idx], scale)


def unlabeled_images(config: ml_collections.ConfigDict, dataset, streams: Mapping[str, tuple[str, str]]
                     ) -> tuple[int, np.ndarray, dict[str, np.ndarray], Any]:
  """What a game on unlabeled training images needs from its dataset, in memory or streamed.

  Args:
    config: the experiment config (`data.init_size`, `data.scale`, `data.num_workers`, ...).
    dataset: an in-memory dataset (`train_x`) or a `data.image_folder.StreamingDataset` (image
      folders, decoded on demand per chunk by `train.streaming.StreamingFeeder`).
    streams: the variant's batch contract, every stream reading the images array 'x'.
  Returns:
    (number of training images, the model-range init batch, the in-memory arrays for
    `assemble`, the feeder for `assemble`: None = `config.data.feeder`'s in-memory feeder).
  """
  from itgan_jax.data import image_folder  # pylint: disable=import-outside-toplevel
  from itgan_jax.train import streaming  # pylint: disable=import-outside-toplevel
  d = config.data
  if not isinstance(dataset, image_folder.StreamingDataset):
    return (dataset.train_x.shape[0], init_batch(dataset, d.init_size, config.seed, d.scale),
            {"x": dataset.train_x}, None)
  init = preprocess.to_float(image_folder.first_images(dataset, d.init_size, config.seed),
                             d.scale)
  feeder = streaming.StreamingFeeder({"x": dataset}, {}, dict(streams), d.scale,
                                     num_workers=d.get("num_workers", 8),
                                     prefetch=d.get("prefetch", True))
  return dataset.num_train, init, {}, feeder


def steps_per_epoch(train_config: ml_collections.ConfigDict, num_examples: int) -> int:
  """`train.steps_per_epoch`, or one pass over `num_examples` when None."""
  batch_size = train_config.batch_size
  full = num_examples // batch_size
  steps = train_config.get("steps_per_epoch")
  if steps is None:
    steps = full
  if not 0 < steps <= full:
    raise ValueError(f"train.steps_per_epoch={steps} must be in [1, {full}] (one pass over the "
                     f"{num_examples} training examples in batches of {batch_size}); None = "
                     f"{full}")
  return int(steps)


def optimizers(config: ml_collections.ConfigDict):
  """(g_tx, d_tx, lr_schedule) from `config.optim` (Adam directions, per-epoch rate)."""
  o = config.optim
  weights = {p: o.get(f"historical_averaging_{p}", 0.0) for p in ("g", "d")}
  for player, weight in weights.items():
    if weight < 0:
      raise ValueError(f"optim.historical_averaging_{player}={weight} must be >= 0 (0 = off)")
  return (factory.build_optimizer(o, weights["g"]), factory.build_optimizer(o, weights["d"]),
          factory.build_lr_schedule(o))


def assemble(config: ml_collections.ConfigDict, dataset, variant: Variant, *,
             arrays: Mapping[str, np.ndarray], streams: Mapping[str, tuple[str, str]],
             epoch_plan, steps: int, init: np.ndarray, offered: tuple[str, ...],
             feeder: Any = None) -> Experiment:
  """The `Experiment` of `variant`: its feeder (`config.data.feeder`, or `feeder` when given, e.g.
  `train.streaming.StreamingFeeder`), evaluators (`config.evals`, of the kinds it `offered`) and
  the rest of the bundle."""
  scale = config.data.scale
  context = evaluators_lib.EvalContext(
      variant_name=config.variant, variant=variant, dataset=dataset, scale=scale,
      seed=config.seed, batch_size=config.train.batch_size, num_epochs=config.train.num_epochs)
  return Experiment(
      variant=variant,
      feeder=feeder if feeder is not None else input_pipeline.make_feeder(
          config.data.get("feeder", "auto"), arrays, streams, scale),
      epoch_plan=epoch_plan, steps_per_epoch=steps, init_batch=init,
      evaluators=evaluators_lib.build(config.get("evals"), context, offered),
      batch_size=config.train.batch_size, scale=scale, dataset=dataset,
      matmul_precision=precision_lib.from_config(config).matmul)


def check_feature_layer(discriminator, image_shape, fm_layer: int) -> None:
  """Feature matching reads entry `fm_layer` of D's feature tuple: check it exists (traced only)."""
  x = jax.ShapeDtypeStruct((2,) + tuple(image_shape), np.float32)
  rngs = {k: jax.random.PRNGKey(0) for k in ("params", "noise", "dropout")}
  (_, feats), _ = jax.eval_shape(
      lambda x: discriminator.init_with_output(rngs, x, train=True), x)
  n = len(feats)
  if not -n <= fm_layer < n:
    raise ValueError(f"loss.fm_layer={fm_layer} but the discriminator "
                     f"{type(discriminator).__name__} exposes {n} feature layer(s) for feature "
                     f"matching (valid: {-n}..{n - 1}); choose one of them or another "
                     "loss.generator")


def check_generator_loss(loss: ml_collections.ConfigDict) -> None:
  """The G objective and one-sided label smoothing keys (clear errors at build time)."""
  from itgan_jax.losses import gan as gan_losses  # pylint: disable=import-outside-toplevel
  gan_losses.check_label_smoothing(loss.label_smoothing)
  if loss.generator != "feature_matching":
    gan_losses.make_generator_loss(loss.generator, loss.get("kl_target", 0.375))


def compute_dtype(config: ml_collections.ConfigDict) -> str:
  """`config.precision.compute_dtype` (validated; 'float32' when absent), for the variant."""
  return precision_lib.from_config(config).compute_dtype


def get_option(cfg: Any, key: str, default):
  """An optional config key (configs written before the key existed lack it)."""
  return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
