"""What the training loop needs from an experiment: the variant contract, evaluators, the bundle.

The loop (`train/loop.py`) drives any training variant through these interfaces and nothing else;
it never learns which game is played. A variant module (`itgan_jax/variants/<name>.py`) implements
`Variant` and assembles an `Experiment` from a config (see docs/engine.md).

Data flows one way: config -> `itgan_jax.experiment.build` (data, models, variant, evaluators)
-> `loop.train_and_evaluate` -> writers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import jax
import numpy as np

Metrics = dict[str, jax.Array]
StepFn = Callable[[Any, dict, jax.Array], tuple[Any, Metrics]]


@runtime_checkable
class Variant(Protocol):
  """One training game (semi-supervised K+1, plain GAN, progressive growing, projections, ...).

  Attributes:
    metric_keys: the scalar keys every `train_step` returns (averaged per epoch into the logs).
    progress_keys: the subset of `metric_keys` shown in the progress bar.
    curve_keys: keys (training metrics and evaluator outputs) plotted in `curves.png`.
    phase_starts: first step of each phase after the first (empty for one-phase variants). The
      loop compiles one chunk function per phase, never runs a chunk across a phase start, and
      calls `enter_phase` when the state crosses one.

  Optional hook (looked up with `getattr`, so a variant without it satisfies the contract):
    state_sharding(abstract_state, mesh) -> a pytree of `jax.sharding.NamedSharding` over `mesh`
      with the structure of `abstract_state` (the state of one phase as ShapeDtypeStructs), or
      None. The loop places the state that way in `init`, every chunk, `enter_phase` and
      checkpoint restores (`train.chunk.state_sharding`); without the hook, or with None, every
      leaf is replicated (define it only where it may place something: the loop traces the
      state's shapes for it). RP-GAN's `k_strategy='shard'` splits D's stacked leaves along K.
  """
  metric_keys: tuple[str, ...]
  progress_keys: tuple[str, ...]
  curve_keys: tuple[str, ...]
  phase_starts: tuple[int, ...]

  def init(self, rng: jax.Array, init_batch: jax.Array) -> Any:
    """The initial state (a pytree) of phase 0; `init_batch` feeds data-dependent init."""

  def train_step(self, state: Any, batch: dict, rng: jax.Array) -> tuple[Any, Metrics]:
    """One pure training iteration; `batch` has the keys of the variant's streams."""

  def phase_train_step(self, phase: int) -> StepFn:
    """The pure step used inside `phase` (one-phase variants: `train_step`)."""

  def enter_phase(self, state: Any, phase: int) -> Any:
    """Transforms the state of phase `phase - 1` into the first state of `phase` (new layers,
    optimizer reset). Pure; traced under `jax.eval_shape` to build restore templates."""

  def generate(self, state: Any, z: jax.Array) -> jax.Array:
    """Generator samples (model range) for latents `z`."""

  def sample_latent(self, rng: jax.Array, num: int) -> jax.Array:
    """`num` latents from the generator's input distribution."""


@dataclasses.dataclass
class EvalOutput:
  """What one evaluator returns: scalars for the logs, uint8 HWC images for PNG/TensorBoard."""
  scalars: dict[str, float] = dataclasses.field(default_factory=dict)
  images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Evaluator(Protocol):
  """A config-scheduled evaluation (big_vision style), e.g. `itgan_jax/evaluators/`.

  Attributes:
    name: the config entry's name (`config.evals.<name>`); images go to `<workdir>/<name>/`.
    keys: the scalar keys it may report (for curves).
  """
  name: str
  keys: tuple[str, ...]

  def due(self, epoch: int) -> bool:
    """Whether it runs after 1-based `epoch` (its `every_epochs`, and the last epoch)."""

  def prepare(self, mesh: jax.sharding.Mesh) -> None:
    """Places its data and compiles its functions for `mesh` (called once by the loop)."""

  def __call__(self, state: Any, epoch: int) -> EvalOutput:
    """Evaluates `state` after 1-based `epoch`."""


@dataclasses.dataclass
class Experiment:
  """Everything the loop needs, assembled from one config by the variant's `build`.

  Attributes:
    variant: the `Variant`.
    feeder: the input pipeline (`train.input_pipeline`), which knows the variant's batch streams.
    epoch_plan: `epoch -> {stream: int32 (steps_per_epoch, global batch)}` index plan,
      deterministic in (seed, epoch) so any epoch can be regenerated on resume.
    steps_per_epoch: iterations per epoch.
    init_batch: float32 model-range images for data-dependent init.
    evaluators: the scheduled evaluators, run in this order.
    batch_size: global batch size (checked against the device count).
    dataset: the in-memory dataset (`data.base.ArrayDataset`) or None for streaming sources.
    scale: pixel scaling of the data (`data.preprocess`).
    matmul_precision: `jax.default_matmul_precision` value that initialisation, the training
      chunks and the evaluators are traced under (`config.precision.matmul`, train/precision.py);
      None leaves JAX's setting (XLA's backend default unless set globally).
  """
  variant: Variant
  feeder: Any
  epoch_plan: Callable[[int], Mapping[str, np.ndarray]]
  steps_per_epoch: int
  init_batch: np.ndarray
  evaluators: Sequence[Evaluator]
  batch_size: int
  scale: str
  dataset: Any = None
  matmul_precision: str | None = None
