"""N seeds of one experiment trained as one program: the state gets a leading seed axis (jax.vmap).

`stack(members, seeds)` turns N experiments built from one config with different seeds (member i:
`seed = config.seed + i`, `data.seed_data = config.data.seed_data + i`, see
`itgan_jax.experiment.build` and `config.train.num_seeds`) into one `Experiment` that the
unchanged loop trains. Each member keeps exactly what its separate run would have:

* init: `variant.init(fold_in(PRNGKey(seed_i), 0), init_batch_i)` (as `chunk.init_state`), vmapped;
* data: member i's epoch plan (its labeled subset, its order); the plans are stacked on a last
  axis, so the feeder gathers `(batch, N, ...)` batches and the batch axis stays the sharded one;
* randomness: step t of member i draws `fold_in(rng_i, t)`, as `chunk.make_chunk_fn` does for one
  run (the key the chunk passes in, derived from member 0, is not used);
* evaluators: member i's own evaluators on its slice of the state; their scalars are reported as
  `<key>_seed<seed_i>` plus the mean over seeds under `<key>`, images as `<tag>_seed<seed_i>`.

Training metrics are reported the same way. Checkpoints hold the stacked state (`SeedStack`), so
resume, signals and the NaN guard work as for one run. Requirement on a variant: its object must
not depend on the seeds (all variants here take randomness from the key and data from the plan),
since member 0's variant runs every seed; a variant that does sets `seed_dependent = True` and is
refused (rpgan: its projections come from config.seed).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.train import sharding as sharding_lib
from itgan_jax.train.contract import EvalOutput, Experiment

__all__ = ["SeedStack", "SeedVmap", "stack", "member_state", "per_seed_key"]


def per_seed_key(key: str, seed: int) -> str:
  """The record key of one seed's value, e.g. `test_errors_ema_seed3`."""
  return f"{key}_seed{seed}"


@flax.struct.dataclass
class SeedStack:
  """The members' states stacked on a leading seed axis.

  `step` and `rng` are member 0's, for the loop (all members share the step; the chunk's key
  derived from `rng` is ignored by `SeedVmap`'s step).
  """
  members: Any

  @property
  def step(self) -> jax.Array:
    return self.members.step[0]

  @property
  def rng(self) -> jax.Array:
    return self.members.rng[0]


def member_state(state: SeedStack, index: int) -> Any:
  """The state of member `index` (a slice of every leaf).

  Raises:
    IndexError: `index` is not one of the stack's members (JAX indexing would clamp it to the
      last member silently).
  """
  count = jax.tree.leaves(state.members)[0].shape[0]
  if not -count <= index < count:
    raise IndexError(f"member {index} is out of range: this state stacks {count} seeds "
                     f"(indices 0..{count - 1})")
  return jax.tree.map(lambda x: x[index], state.members)


class SeedVmap:
  """A variant running `members[0]`'s game for every seed under `jax.vmap` (module docstring)."""

  def __init__(self, members: Sequence[Any], seeds: Sequence[int]):
    if len(members) != len(seeds) or len(members) < 2:
      raise ValueError(f"SeedVmap needs >= 2 members and one seed each, got {len(members)} "
                       f"members and seeds {tuple(seeds)}")
    kinds = {type(m).__name__ for m in members}
    if len(kinds) != 1:
      raise ValueError(f"the seeds' variants differ in type ({sorted(kinds)}); "
                       "train.num_seeds needs one variant built N times")
    self.members = tuple(members)
    self.seeds = tuple(int(s) for s in seeds)
    first = self.members[0]
    self.phase_starts = tuple(first.phase_starts)
    self.progress_keys = tuple(first.progress_keys)
    self.curve_keys = tuple(first.curve_keys)
    self.metric_keys = tuple(first.metric_keys) + tuple(
        per_seed_key(k, s) for s in self.seeds for k in first.metric_keys)

  def init(self, rng: jax.Array, init_batch: jax.Array) -> SeedStack:
    """Member i: `init(fold_in(PRNGKey(seed_i), 0), init_batch[i])`, its separate run's start
    (`chunk.init_state`); the loop's `rng` (of `config.seed`) is not used."""
    del rng
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 0) for s in self.seeds])
    return SeedStack(jax.vmap(self.members[0].init)(keys, init_batch))

  def _vmapped(self, step_fn):
    seeds = self.seeds

    def step(state: SeedStack, batch: dict, rng: jax.Array):
      del rng  # each member draws fold_in(its own rng, its step), as its separate run

      def one(s, b):
        return step_fn(s, b, jax.random.fold_in(s.rng, s.step))
      members, metrics = jax.vmap(one, in_axes=(0, 1))(state.members, batch)
      out = {k: jnp.mean(v) for k, v in metrics.items()}
      for i, seed in enumerate(seeds):
        out.update({per_seed_key(k, seed): v[i] for k, v in metrics.items()})
      return SeedStack(members), out
    return step

  def train_step(self, state: SeedStack, batch: dict, rng: jax.Array):
    """Every member's `train_step` on its own batch (batch axis 1) and key, vmapped."""
    return self._vmapped(self.members[0].train_step)(state, batch, rng)

  def phase_train_step(self, phase: int):
    return self._vmapped(self.members[0].phase_train_step(phase))

  def enter_phase(self, state: SeedStack, phase: int) -> SeedStack:
    return SeedStack(jax.vmap(lambda s: self.members[0].enter_phase(s, phase))(state.members))

  def generate(self, state: SeedStack, z: jax.Array) -> jax.Array:
    """Every member's samples for the same latents: (N, batch, ...)."""
    return jax.vmap(lambda s: self.members[0].generate(s, z))(state.members)

  def sample_latent(self, rng: jax.Array, num: int) -> jax.Array:
    return self.members[0].sample_latent(rng, num)


class PerSeedEvaluator:
  """One evaluator per member, each on its member's slice of the state; scalars per seed
  (`<key>_seed<s>`) and their mean over seeds (`<key>`), images per seed (`<tag>_seed<s>`)."""

  def __init__(self, evaluators: Sequence[Any], seeds: Sequence[int]):
    self._evaluators = tuple(evaluators)
    self._seeds = tuple(seeds)
    self.name = self._evaluators[0].name
    self.keys = tuple(self._evaluators[0].keys)
    self._slice = None

  def due(self, epoch: int) -> bool:
    return self._evaluators[0].due(epoch)

  def prepare(self, mesh) -> None:
    for evaluator in self._evaluators:
      evaluator.prepare(mesh)
    self._slice = jax.jit(member_state, static_argnums=(1,),
                          out_shardings=sharding_lib.replicated(mesh))

  def __call__(self, state: SeedStack, epoch: int) -> EvalOutput:
    scalars, images, values = {}, {}, {}
    for i, (evaluator, seed) in enumerate(zip(self._evaluators, self._seeds)):
      out = evaluator(self._slice(state, i), epoch)
      for key, value in out.scalars.items():
        scalars[per_seed_key(key, seed)] = value
        values.setdefault(key, []).append(value)
      images.update({per_seed_key(tag, seed): image for tag, image in out.images.items()})
    scalars.update({key: float(np.mean(v)) for key, v in values.items()})
    return EvalOutput(scalars=scalars, images=images)


def _same_arrays(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(
      a[k] is b[k] or (a[k].shape == b[k].shape and np.array_equal(a[k], b[k])) for k in a)


def stack(members: Sequence[Experiment], seeds: Sequence[int]) -> Experiment:
  """One experiment training `members` (built from one config, seeds `seeds`) as one program."""
  first = members[0]
  if getattr(first.variant, "seed_dependent", False):
    raise ValueError(f"the {type(first.variant).__name__} variant depends on the seed beyond its "
                     "key (e.g. rpgan's projections are drawn from config.seed), so "
                     "train.num_seeds > 1 would give every seed member 0's; run the seeds "
                     "separately (train.num_seeds=1)")
  for name in ("steps_per_epoch", "batch_size", "scale"):
    values = {getattr(m, name) for m in members}
    if len(values) != 1:
      raise ValueError(f"the seeds' experiments differ in {name} ({sorted(values)}); "
                       "train.num_seeds needs N copies of one experiment")
  for m in members[1:]:
    if (type(m.feeder) is not type(first.feeder) or m.feeder.streams != first.feeder.streams
        or not _same_arrays(m.feeder.host_arrays, first.feeder.host_arrays)):
      raise ValueError("the seeds' experiments read different data arrays or streams; "
                       "train.num_seeds needs one dataset for all seeds")
    if len(m.evaluators) != len(first.evaluators):
      raise ValueError("the seeds' experiments have different evaluators")
    if m.matmul_precision != first.matmul_precision:
      raise ValueError("the seeds' experiments have different precision.matmul")

  def epoch_plan(epoch: int) -> dict[str, np.ndarray]:
    plans = [m.epoch_plan(epoch) for m in members]
    return {k: np.stack([p[k] for p in plans], axis=-1) for k in plans[0]}

  return Experiment(
      variant=SeedVmap([m.variant for m in members], seeds), feeder=first.feeder,
      epoch_plan=epoch_plan, steps_per_epoch=first.steps_per_epoch,
      init_batch=np.stack([m.init_batch for m in members]),
      evaluators=[PerSeedEvaluator([m.evaluators[j] for m in members], seeds)
                  for j in range(len(first.evaluators))],
      batch_size=first.batch_size, scale=first.scale, dataset=first.dataset,
      matmul_precision=first.matmul_precision)
