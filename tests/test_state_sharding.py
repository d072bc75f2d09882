"""The variant's optional `state_sharding` hook (train/chunk.py `state_sharding`) on the two-phase
toy of test_phases.py: without it every leaf stays replicated; with it the loop keeps the hook's
placement through init, the chunks, the phase transform and a resume (bit-exact); checkpoints
restore onto a pytree of shardings; answers that do not fit the state are clear errors."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from itgan_jax.train import chunk, loop, sharding
from itgan_jax.train.checkpoint import Checkpointer
from itgan_jax.train.contract import Experiment
from itgan_jax.train.input_pipeline import DeviceFeeder
from tests.helpers import record_saved_shardings
from tests.test_phases import DATA, SPE, TwoPhaseToy, _config

DEVICES = 2


@dataclasses.dataclass(frozen=True)
class SplitToy(TwoPhaseToy):
  """The toy with G's parameters and momentum split over the mesh axis (2 entries in phase 1, 4
  in phase 2: one or two per device), the rest replicated."""

  def state_sharding(self, abstract_state, mesh):
    repl, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(sharding.DATA_AXIS))
    placed = jax.tree.map(lambda _: repl, abstract_state)
    return placed.replace(g=placed.g.replace(params=split, opt_state=split))


@dataclasses.dataclass(frozen=True)
class NoneToy(TwoPhaseToy):
  def state_sharding(self, abstract_state, mesh):
    return None


def _exp(variant):
  def plan(epoch):
    rng = np.random.default_rng([0, epoch])
    return {"idx": rng.permutation(64)[:SPE * 8].reshape(SPE, 8).astype(np.int32)}
  return Experiment(variant=variant, feeder=DeviceFeeder({"x": DATA}, {"x": ("x", "idx")}, "unit"),
                    epoch_plan=plan, steps_per_epoch=SPE, init_batch=np.zeros((1, 2, 2, 1)),
                    evaluators=(), batch_size=8, scale="unit")


def _run(variant, workdir, num_epochs=3):
  config = _config()
  config.num_devices = DEVICES
  config.train.num_epochs = num_epochs
  loop.train_and_evaluate(_exp(variant), config, str(workdir))


def _final(workdir, variant, mesh=None):
  """The newest checkpoint, placed as the loop places its phase's state (on `mesh`) or as
  orbax reads it."""
  exp = _exp(variant)
  with Checkpointer(workdir) as ckpt:
    phase = ckpt.restore_meta()["phase"]
    placed = None if mesh is None else chunk.state_sharding(exp, mesh, phase)
    return ckpt.restore(loop.abstract_state(exp, phase), sharding=placed)[0]


def test_without_the_hook_every_leaf_stays_replicated(tmp_path, monkeypatch):
  mesh = sharding.make_mesh(DEVICES)
  for variant in (TwoPhaseToy(), NoneToy()):   # no hook, or a hook answering None
    assert chunk.state_sharding(_exp(variant), mesh, 1) == sharding.replicated(mesh)
  saved = record_saved_shardings(monkeypatch)
  _run(TwoPhaseToy(), tmp_path, num_epochs=2)   # through the phase start at step 6
  assert [step for step, _ in saved] == [SPE, 2 * SPE]
  for _, shardings in saved:
    for s in jax.tree.leaves(shardings):
      assert s.spec == P() and len(s.device_set) == DEVICES


def test_the_hook_places_the_state_through_phases_and_a_bit_exact_resume(tmp_path, monkeypatch):
  saved = record_saved_shardings(monkeypatch)
  _run(SplitToy(), tmp_path / "full")
  _run(SplitToy(), tmp_path / "cut", num_epochs=1)    # phase 1 checkpoint at step 4
  _run(SplitToy(), tmp_path / "cut")                  # restore, enter phase 2 at step 6, go on
  assert [step for step, _ in saved] == [4, 8, 12, 4, 8, 12]
  for _, shardings in saved:   # init, chunks, enter_phase, restore: all kept the placement
    assert shardings.g.params.spec == P("data") and shardings.g.opt_state.spec == P("data")
    for s in jax.tree.leaves((shardings.step, shardings.rng, shardings.d)):
      assert s.is_fully_replicated
  mesh = sharding.make_mesh(DEVICES)
  full, cut = (_final(tmp_path / run, SplitToy(), mesh) for run in ("full", "cut"))
  assert full.g.params.shape == (4,) and full.g.params.sharding.spec == P("data")
  assert [s.data.shape for s in full.g.params.addressable_shards] == [(2,), (2,)]
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(cut)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The same numbers as the replicated toy: the placement changes where the values live, and
  # the only cross-device sum is over G's 2 or 4 entries (float32 rounding at most).
  _run(TwoPhaseToy(), tmp_path / "replicated")
  replicated = _final(tmp_path / "replicated", TwoPhaseToy())
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(replicated)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def test_checkpoint_restore_takes_one_sharding_or_a_pytree_of_them(tmp_path):
  mesh = sharding.make_mesh(DEVICES)
  state = {"w": jnp.arange(4.0), "b": jnp.ones((3,), jnp.int32), "none": None}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state, {})
  template = jax.eval_shape(lambda: state)
  split, repl = NamedSharding(mesh, P("data")), sharding.replicated(mesh)
  with Checkpointer(tmp_path) as ckpt:
    got, _ = ckpt.restore(template, sharding={"w": split, "b": repl, "none": None})
    assert got["w"].sharding == split and got["b"].sharding == repl and got["none"] is None
    assert [s.data.shape for s in got["w"].addressable_shards] == [(2,), (2,)]
    np.testing.assert_array_equal(got["w"], np.arange(4.0))
    np.testing.assert_array_equal(got["b"], np.ones(3))
    one, _ = ckpt.restore(template, sharding=repl)   # one sharding for every leaf, as before
    assert one["w"].sharding == repl and one["b"].sharding == repl
    with pytest.raises(ValueError, match="do not match the structure of the state"):
      ckpt.restore(template, sharding={"w": split, "b": repl})


def test_a_hook_answer_that_does_not_fit_the_state_is_a_clear_error():
  mesh = sharding.make_mesh(DEVICES)

  @dataclasses.dataclass(frozen=True)
  class Answer(TwoPhaseToy):
    answer: object = None

    def state_sharding(self, abstract_state, mesh):
      return self.answer(abstract_state, mesh)

  # A tree prefix is broadcast to the leaves under it.
  prefix = Answer(lambda s, m: s.replace(step=sharding.replicated(m), rng=sharding.replicated(m),
                                         g=sharding.replicated(m), d=sharding.replicated(m)))
  placed = chunk.state_sharding(_exp(prefix), mesh)
  assert jax.tree.structure(placed) == jax.tree.structure(loop.abstract_state(_exp(prefix), 0))
  with pytest.raises(ValueError, match="does not match the structure of the phase-0 state"):
    chunk.state_sharding(_exp(Answer(lambda s, m: {"g": sharding.replicated(m)})), mesh)
  with pytest.raises(ValueError, match="every leaf must be a jax.sharding.NamedSharding over"):
    chunk.state_sharding(_exp(Answer(lambda s, m: jax.tree.map(
        lambda _: sharding.replicated(sharding.make_mesh(1)), s))), mesh)
