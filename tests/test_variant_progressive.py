"""The progressive-growing variant: phases, fades, optimizer resets, the update schemes, resume."""

from __future__ import annotations

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from itgan_jax import experiment
from itgan_jax.train import loop
from itgan_jax.train.checkpoint import Checkpointer
from itgan_jax.variants import progressive
from tests.helpers import fake_dataset, load_config, serve_datasets


def _fake_data(monkeypatch, side):
  data = fake_dataset("cifar10", (side, side, 3), 128, 32)
  serve_datasets(monkeypatch, data)


@pytest.fixture(autouse=True)
def fake_data(monkeypatch, rbg_prng):   # RBG keys: threefry's compile time would dominate
  # 8x8 images (levels 4, 8): every mechanism of the 32x32 run (a stable phase, a fade, the full
  # size), the smallest programs to compile.
  _fake_data(monkeypatch, 8)


def _config(arg="tiny", **overrides):
  return load_config("cifar10_progan", arg, **{"num_devices": 1, "log.progress": False,
                                               "log.print_epochs": False, **overrides})


def _np_pool(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def test_reals_are_pooled_and_faded_as_numpy():
  x = np.random.RandomState(0).rand(2, 16, 16, 3).astype(np.float32)
  x8 = _np_pool(x)
  low = np.repeat(np.repeat(_np_pool(x8), 2, axis=1), 2, axis=2)
  for alpha in (0.0, 0.3, 1.0):
    got = progressive.reals_at(jnp.asarray(x), 1, 2, jnp.float32(alpha))
    np.testing.assert_allclose(got, low + alpha * (x8 - low), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(progressive.reals_at(jnp.asarray(x), 1, 2, None), x8, rtol=1e-6)
  np.testing.assert_array_equal(progressive.reals_at(jnp.asarray(x), 2, 2, None), x)


def test_the_config_builds_the_theano_cifar_setup(monkeypatch):
  _fake_data(monkeypatch, 32)
  config = _config("")
  exp = experiment.build(config)
  v = exp.variant
  assert [p.resolution for p in v.schedule.phases] == [4, 8, 8, 16, 16, 32, 32]
  assert v.phase_starts == (25_000, 50_000, 75_000, 100_000, 125_000, 150_000)
  assert (v.loss, v.gp_target, v.update, v.batch_size, v.g_ema_rate) == (
      "wgan_gp", 750.0, "simultaneous", 16, 0.001)
  # One pass over CIFAR-10's 50,000 images per epoch: 400 epochs = 20M images.
  assert config.train.steps_per_epoch is None and config.train.num_epochs * 50_000 == 20_000_000


def _state_and_batch(exp, phase=0):
  v = exp.variant
  state = jax.jit(v.init)(jax.random.PRNGKey(0), exp.init_batch)
  for p in range(1, phase + 1):
    state = v.enter_phase(state, p)
  state = state.replace(step=jnp.asarray(v.schedule.phases[phase].start, jnp.int32))
  batch = exp.feeder.batch(exp.feeder.put(None), {k: r[0] for k, r in exp.epoch_plan(0).items()})
  return state, batch


def test_enter_phase_restarts_adam_by_the_rule():
  exp = experiment.build(_config())
  v = exp.variant
  state, batch = _state_and_batch(exp)
  state, _ = jax.jit(v.phase_train_step(0))(state, batch, jax.random.PRNGKey(1))
  moments = [x for x in jax.tree.leaves(state.d.opt_state) if x.ndim]
  assert any(np.any(np.asarray(x) != 0) for x in moments)
  reset = v.enter_phase(state, 1)
  for a, b in zip(jax.tree.leaves(reset.d.opt_state),
                  jax.tree.leaves(v.d_tx.init(state.d.params))):
    np.testing.assert_array_equal(a, b)
  never = experiment.build(_config(**{"optim.reset": "never"})).variant
  assert never.enter_phase(state, 1) is state
  fade_start = experiment.build(_config(**{"optim.reset": "fade_start"})).variant
  assert fade_start.enter_phase(state, 2) is state and fade_start.enter_phase(state, 1) is not state


@pytest.mark.parametrize("update, g_sees_new_d", [("simultaneous", False), ("alternating", True)])
def test_update_scheme_decides_which_discriminator_the_generator_sees(update, g_sees_new_d):
  """Freezing D's update (a zero optimizer) leaves G's step unchanged exactly when G's gradient
  is taken at D's starting parameters (the simultaneous Theano CIFAR update)."""
  exp = experiment.build(_config(**{"train.update": update}))
  v = exp.variant
  state, batch = _state_and_batch(exp, phase=1)   # inside the 8x8 fade
  frozen = progressive.ProgressiveGAN(**{**{f: getattr(v, f) for f in v.__dataclass_fields__},
                                         "d_tx": optax.set_to_zero()})
  state_frozen = state.replace(d=state.d.replace(opt_state=frozen.d_tx.init(state.d.params)))
  rng = jax.random.PRNGKey(2)
  a, metrics = jax.jit(v.phase_train_step(1))(state, batch, rng)
  b, _ = jax.jit(frozen.phase_train_step(1))(state_frozen, batch, rng)
  same = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a.g.params),
                                                   jax.tree.leaves(b.g.params)))
  assert same != g_sees_new_d
  assert set(metrics) == set(v.metric_keys)
  assert float(metrics["alpha"]) == 0.0 and float(metrics["lod"]) == 1.0


def test_generate_upsamples_the_current_level_to_full_size():
  exp = experiment.build(_config())
  v = exp.variant
  state, _ = _state_and_batch(exp)
  z = v.sample_latent(jax.random.PRNGKey(3), 4)
  out = np.asarray(jax.jit(v.generate)(state, z))
  assert out.shape == (4, 8, 8, 3)
  low = np.asarray(v.apply_network(v.generator, state.g.variables(use_ema=True), z, level=0,
                                   train=True))
  np.testing.assert_allclose(out, np.repeat(np.repeat(low, 2, 1), 2, 2), rtol=1e-5, atol=1e-6)
  late = state.replace(step=jnp.asarray(10**6, jnp.int32))
  full = np.asarray(v.apply_network(v.generator, state.g.variables(use_ema=True), z, train=True))
  np.testing.assert_allclose(np.asarray(jax.jit(v.generate)(late, z)), full, rtol=1e-4,
                             atol=1e-4)   # jitted vs op-by-op float32 convolutions


@pytest.mark.parametrize("overrides, match", [
    ({"train.update": "sideways"}, "train.update"),
    ({"loss.kind": "hinge"}, "loss.kind"),
    ({"loss.label_smoothing": 0.9}, "applies to loss.kind='bce'"),
    ({"train.d_steps_per_g_step": 5}, "needs train.update='alternating'"),
    ({"schedule.initial_resolution": 6}, "power of two"),
    ({"optim.reset": "sometimes"}, "optim.reset"),
])
def test_bad_settings_are_clear_errors(overrides, match):
  with pytest.raises(ValueError, match=match):
    experiment.build(_config(**overrides))


def _records(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_grows_and_resumes_inside_a_fade_bit_exactly(tmp_path):
  # 4 -> 8: phases start at steps 2 (8x8 fade, 3 steps) and 5; 3 epochs of 4 steps.
  over = {"train.num_epochs": 3, "train.steps_per_call": 1}
  config = _config(**over)
  experiment.train(config, str(tmp_path / "full"))

  def stop_inside_the_fade(step):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(experiment.build(config), config, str(tmp_path / "cut"),
                            chunk_callback=stop_inside_the_fade)
  with Checkpointer(tmp_path / "cut") as ckpt:
    assert ckpt.latest_step() == 3 and ckpt.restore_meta()["phase"] == 1
  experiment.train(config, str(tmp_path / "cut"))
  full, cut = _records(tmp_path / "full"), _records(tmp_path / "cut")
  assert [r["epoch"] for r in full] == [1, 2, 3]
  for a, b in zip(full, cut):
    for key in ("loss_d", "loss_gen", "gp", "alpha", "lod"):
      assert a[key] == b[key], key
  np.testing.assert_allclose([r["lod"] for r in full],
                             # epoch means of Theano's LOD over steps 0-3, 4-7, 8-11
                             [np.mean([1, 1, 1, 2 / 3]), np.mean([1 / 3, 0, 0, 0]), 0.0],
                             rtol=1e-6, atol=1e-7)
  exp = experiment.build(config)
  states = []
  for d in ("full", "cut"):
    with Checkpointer(tmp_path / d) as ckpt:
      states.append(ckpt.restore(loop.abstract_state(exp, ckpt.restore_meta()["phase"]))[0])
  for x, y in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert (tmp_path / "full" / "samples" / "epoch_0003.png").exists()


def test_four_devices_match_one_inside_a_fade():
  """The fade step (whole-minibatch stddev, gradient penalty) sharded over 4 devices equals one
  device: batch statistics are global, not per device. (8x8 images: the 4 -> 8 fade.)"""
  from itgan_jax.train import chunk, sharding  # pylint: disable=import-outside-toplevel
  assert jax.device_count() >= 4   # conftest: 8 fake CPU devices
  exp = experiment.build(_config())
  results = []
  for devices in (1, 4):
    mesh = sharding.make_mesh(devices)
    state = chunk.init_state(exp, mesh, seed=0)
    state = jax.device_put(exp.variant.enter_phase(state, 1).replace(
        step=jnp.asarray(2, jnp.int32)), sharding.replicated(mesh))
    run = chunk.compile_chunk(exp, mesh, state, 2, phase=1)
    state, metrics = run(state, 0, 2)
    results.append((jax.device_get(state), jax.device_get(metrics)))
  (s1, m1), (s4, m4) = results
  assert len(jax.tree.leaves(state.d.params)[0].sharding.device_set) == 4
  for key in ("loss_d", "loss_gen", "gp", "wdist", "alpha"):
    np.testing.assert_allclose(m4[key][0], m1[key][0], rtol=2e-4, atol=2e-5, err_msg=key)
  np.testing.assert_allclose(m4["alpha"], [0.0, 1 / 3], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(s1.g.params), jax.tree.leaves(s4.g.params)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_discriminator_is_initialised_on_the_first_phase_inputs():
  """Minibatch discrimination's data-dependent init (row e*) sees the 4x4 reals through the 4x4
  path, as Theano initialises at the starting resolution; the tree is still the full one."""
  exp = experiment.build(_config(**{"model.minibatch_kernels": 4, "model.minibatch_dim": 3}))
  v = exp.variant
  state = jax.jit(v.init)(jax.random.PRNGKey(0), exp.init_batch)
  keys = jax.random.split(jax.random.PRNGKey(0), 7)   # init_players' split: D takes 3, 4, 5
  rngs = {"params": keys[3], "noise": keys[4], "dropout": keys[5]}
  x = jnp.asarray(exp.init_batch)
  at_4x4 = v.discriminator.init(rngs, progressive.reals_at(x, 0, v.full_level, None), level=0,
                                train=True)["params"]
  at_full = v.discriminator.init(rngs, x, train=True)["params"]
  assert jax.tree.structure(state.d.params) == jax.tree.structure(at_full)
  for a, b in zip(jax.tree.leaves(state.d.params), jax.tree.leaves(at_4x4)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(at_4x4),
                                                    jax.tree.leaves(at_full)))


def test_first_paper_techniques_compose():
  """Virtual batch norm in G, the first paper's GAN loss with one-sided label smoothing and
  historical averaging on D take a finite step (8x8 images: the 4 -> 8 fade)."""
  exp = experiment.build(_config(**{
      "model.g_norm": "vbn", "model.vbn_ref_size": 4, "loss.kind": "bce",
      "loss.label_smoothing": 0.9, "optim.historical_averaging_d": 0.01,
      "train.update": "alternating"}))
  v = exp.variant
  state, batch = _state_and_batch(exp, phase=1)
  assert "vbn_ref" in state.g.constants
  new, metrics = jax.jit(v.phase_train_step(1))(state, batch, jax.random.PRNGKey(4))
  assert set(metrics) == set(v.metric_keys) and "gp" not in metrics
  for key, value in metrics.items():
    assert np.isfinite(float(value)), key
  assert int(new.step) == int(state.step) + 1
