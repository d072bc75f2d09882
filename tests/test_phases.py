"""The loop's phase hook on a toy two-phase variant: per-phase steps, the state transform at the
phase start, the phase in the checkpoint, and a resume inside phase 2 that is bit-exact."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from itgan_jax.train import loop
from itgan_jax.train.checkpoint import Checkpointer
from itgan_jax.train.contract import Experiment
from itgan_jax.train.input_pipeline import DeviceFeeder
from itgan_jax.train.state import Player, TrainState

DATA = np.random.RandomState(0).randint(0, 256, (64, 2, 2, 1)).astype(np.uint8)
SPE, PHASE2 = 4, 6   # 4 steps per epoch; phase 2 starts at step 6 (inside epoch 2)


@dataclasses.dataclass(frozen=True)
class TwoPhaseToy:
  """Phase 1 fits a 2-vector to batch means, phase 2 a 4-vector (new entries appended, optimizer
  state reset): the state's shapes change at the phase start, as in progressive growing."""
  metric_keys = ("loss",)
  progress_keys = ("loss",)
  curve_keys = ("loss",)
  phase_starts = (PHASE2,)

  def init(self, rng, init_batch):
    del init_batch
    w = jax.random.normal(rng, (2,))
    return TrainState(step=jnp.zeros([], jnp.int32), rng=rng, g=Player(w, {}, jnp.zeros(2)),
                      d=Player(jnp.zeros(()), {}, jnp.zeros(())))

  def _step(self, state, batch, rng, scale):
    target = jnp.mean(batch["x"]) + 0.01 * jax.random.normal(rng, state.g.params.shape)
    loss, grad = jax.value_and_grad(lambda w: jnp.sum((scale * w - target) ** 2))(state.g.params)
    momentum = 0.9 * state.g.opt_state + grad
    g = state.g.replace(params=state.g.params - 0.05 * momentum, opt_state=momentum)
    return state.replace(step=state.step + 1, g=g), {"loss": loss}

  def phase_train_step(self, phase):
    return lambda s, b, r: self._step(s, b, r, 1.0 if phase == 0 else 2.0)

  def train_step(self, state, batch, rng):
    return self._step(state, batch, rng, 1.0)

  def enter_phase(self, state, phase):
    assert phase == 1
    w = jnp.concatenate([state.g.params, state.g.params[::-1]])
    return state.replace(g=Player(w, {}, jnp.zeros(4)))     # new entries, momentum reset

  def generate(self, state, z):
    return jnp.zeros((z.shape[0], 2, 2, 1))

  def sample_latent(self, rng, num):
    return jax.random.uniform(rng, (num, 1))


def _exp():
  def plan(epoch):
    rng = np.random.default_rng([0, epoch])
    return {"idx": rng.permutation(64)[:SPE * 8].reshape(SPE, 8).astype(np.int32)}
  return Experiment(variant=TwoPhaseToy(), feeder=DeviceFeeder({"x": DATA}, {"x": ("x", "idx")},
                                                               "unit"),
                    epoch_plan=plan, steps_per_epoch=SPE, init_batch=np.zeros((1, 2, 2, 1)),
                    evaluators=(), batch_size=8, scale="unit")


def _config(steps_per_call=4):
  c = ml_collections.ConfigDict(dict(
      seed=0, num_devices=1,
      train=dict(num_epochs=3, steps_per_call=steps_per_call),
      checkpoint=dict(every_epochs=1, max_to_keep=3),
      log=dict(progress=False, print_epochs=False, tensorboard=False,
               curves_every_epochs=1)))
  return c


def _final(workdir):
  exp = _exp()
  with Checkpointer(workdir) as ckpt:
    meta = ckpt.restore_meta()
    state, _ = ckpt.restore(loop.abstract_state(exp, meta["phase"]))
  return state, meta


def test_phase_two_changes_shapes_and_resume_inside_it_is_bit_exact(tmp_path):
  loop.train_and_evaluate(_exp(), _config(), str(tmp_path / "full"))
  state, meta = _final(tmp_path / "full")
  assert meta["phase"] == 1 and state.g.params.shape == (4,) and int(state.step) == 12

  # One step per chunk; SIGTERM after step 7, i.e. inside phase 2 and inside epoch 2.
  def stop_in_phase_two(step):
    if step == 7:
      os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(_exp(), _config(steps_per_call=1), str(tmp_path / "cut"),
                            chunk_callback=stop_in_phase_two)
  with Checkpointer(tmp_path / "cut") as ckpt:
    assert ckpt.latest_step() == 7 and ckpt.restore_meta()["phase"] == 1
  loop.train_and_evaluate(_exp(), _config(), str(tmp_path / "cut"))
  resumed, _ = _final(tmp_path / "cut")
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  full = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
  cut = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
  assert [r["loss"] for r in full] == [r["loss"] for r in cut]


def test_sigterm_at_an_epoch_end_stops_after_the_checkpoint(tmp_path):
  def stop_at_epoch_end(step):
    if step == SPE:
      os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(KeyboardInterrupt, match="end of epoch 1"):
    loop.train_and_evaluate(_exp(), _config(), str(tmp_path), chunk_callback=stop_at_epoch_end)
  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == SPE


def test_resume_at_the_phase_start_applies_the_transform(tmp_path):
  """A checkpoint written at step 4 (phase 1 state) resumes into phase 2 at step 6 correctly."""
  loop.train_and_evaluate(_exp(), _config(), str(tmp_path / "full"))
  short = _config()
  short.train.num_epochs = 1
  loop.train_and_evaluate(_exp(), short, str(tmp_path / "two"))
  with Checkpointer(tmp_path / "two") as ckpt:
    assert ckpt.restore_meta()["phase"] == 0
  loop.train_and_evaluate(_exp(), _config(), str(tmp_path / "two"))
  a, _ = _final(tmp_path / "full")
  b, _ = _final(tmp_path / "two")
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
