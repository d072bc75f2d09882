"""What evaluators are built from, their schedule, and shared sampling."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from itgan_jax.data import preprocess


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """The experiment's pieces an evaluator may use (built by the variant's `build`).

  Attributes:
    variant_name: `config.variant`, for messages.
    variant: the variant (evaluators call its public methods: generate, sample_latent, classify).
    dataset: the in-memory dataset (`data.base.ArrayDataset`), or None.
    scale: pixel scaling of the data (`data.preprocess`).
    seed: `config.seed`; evaluators derive fixed latents from it.
    batch_size: the training batch size (generation batches, as the official code samples).
    num_epochs: the run's epochs (every evaluator also runs after the last one).
  """
  variant_name: str
  variant: Any
  dataset: Any
  scale: str
  seed: int
  batch_size: int
  num_epochs: int


def positive_int(name: str, value, allow_none: bool = False) -> int | None:
  """`value` as an int >= 1 (or None when allowed), else a ValueError naming the config key."""
  if value is None and allow_none:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"config.{name}={value!r} must be an integer >= 1"
                     + (" (or None)" if allow_none else ""))
  return int(value)


class Scheduled:
  """Schedule shared by the evaluators: after epochs `every_epochs` divides, and the last one."""
  name: str
  every_epochs: int
  num_epochs: int

  def due(self, epoch: int) -> bool:
    return epoch % self.every_epochs == 0 or epoch == self.num_epochs


def generate_uint8(generate: Callable[[Any, jax.Array], jax.Array], state: Any, rng: jax.Array,
                   num: int, scale: str) -> np.ndarray:
  """`num` uint8 samples: batch i from `generate(state, fold_in(rng, i))` (a jitted function that
  draws its own latents), quantised with the data's `scale`."""
  out, count, i = [], 0, 0
  while count < num:
    batch = preprocess.to_uint8(np.asarray(generate(state, jax.random.fold_in(rng, i))), scale)
    out.append(batch)
    count += batch.shape[0]
    i += 1
  return np.concatenate(out)[:num]


def latent_generator(variant: Any, batch_size: int, mesh: jax.sharding.Mesh | None = None):
  """A jitted `(state, rng) -> samples` drawing `batch_size` latents from `rng`.

  With a `mesh` whose device count divides `batch_size`, the latents (and so the generator's
  work) are split over its data axis, batch statistics stay global as in training, and the
  samples come back replicated (readable on every process)."""
  from itgan_jax.train import sharding as sharding_lib  # pylint: disable=import-outside-toplevel
  split = mesh is not None and batch_size % mesh.devices.size == 0

  def generate(state, key):
    z = variant.sample_latent(key, batch_size)
    if split:
      z = jax.lax.with_sharding_constraint(z, sharding_lib.batch_sharded(mesh, 0))
    return variant.generate(state, z)
  if mesh is None:
    return jax.jit(generate)
  return jax.jit(generate, out_shardings=sharding_lib.replicated(mesh))
