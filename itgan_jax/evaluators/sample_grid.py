"""A grid of generator samples from fixed latents, written as PNG and to TensorBoard.

The latents are drawn once from `fold_in(PRNGKey(config.seed), 1)`, so successive grids show how
the generator changes. Config (`config.evals.<name>`): kind='sample_grid', every_epochs,
num_samples (100: a 10 x 10 grid). The loop writes `<workdir>/<name>/epoch_NNNN.png` and
`<name>/latest.png`.
"""

from __future__ import annotations

import jax
import numpy as np

from itgan_jax.data import preprocess
from itgan_jax.evaluators.common import EvalContext, Scheduled, positive_int
from itgan_jax.train import sharding as sharding_lib
from itgan_jax.train import writers
from itgan_jax.train.contract import EvalOutput


class SampleGrid(Scheduled):
  """`variant.generate(state, z)` on fixed latents `z`, tiled into one uint8 image."""
  keys = ()

  def __init__(self, name: str, variant, z: jax.Array, scale: str, *, every_epochs: int,
               num_epochs: int):
    self.name, self.every_epochs, self.num_epochs = name, every_epochs, num_epochs
    self._variant, self._z, self._scale = variant, z, scale
    self._fn = None

  def prepare(self, mesh) -> None:
    repl = sharding_lib.replicated(mesh)
    self._z = sharding_lib.replicated_array(np.asarray(self._z), mesh)
    self._fn = jax.jit(self._variant.generate, out_shardings=repl)

  def __call__(self, state, epoch: int) -> EvalOutput:
    del epoch
    images = preprocess.to_uint8(np.asarray(self._fn(state, self._z)), self._scale)
    return EvalOutput(images={self.name: writers.image_grid(images)})


def build(name: str, cfg, context: EvalContext) -> SampleGrid:
  num = positive_int(f"evals.{name}.num_samples", cfg.num_samples)
  z = context.variant.sample_latent(jax.random.fold_in(jax.random.PRNGKey(context.seed), 1), num)
  return SampleGrid(name, context.variant, z, context.scale,
                    every_epochs=positive_int(f"evals.{name}.every_epochs", cfg.every_epochs),
                    num_epochs=context.num_epochs)
