"""The RP-GAN variant (variants/rpgan.py): losses against NumPy, the stacked K-discriminator step
against a Python loop of single-discriminator steps (every strategy), D independence, the fixed
shared projections, presets, config errors, a tiny run and its bit-exact resume, and 'shard' in the
loop (D's stacked leaves split along K, = 'vmap' on one device, bit-exact resume)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from itgan_jax import experiment
from itgan_jax.losses import gan as gan_losses
from itgan_jax.models import rpgan as rp
from itgan_jax.train import chunk, loop, sharding
from itgan_jax.train.checkpoint import Checkpointer
from itgan_jax.variants import rpgan
from tests.helpers import fake_dataset, load_config, record_saved_shardings, serve_datasets
from tests.test_image_folder import make_folder


CIFAR = fake_dataset("cifar10", (32, 32, 3), 64, 16)
MNIST = fake_dataset("mnist", (28, 28, 1), 64, 16)
SMALL = fake_dataset("cifar10", (16, 16, 3), 32, 8)   # 16x16: fewer layers, faster compiles


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
  serve_datasets(monkeypatch, MNIST, default=CIFAR)


def _config(name="cifar10_rpgan", arg="tiny", **overrides):
  return load_config(name, arg, **{"num_devices": 1, "log.progress": False,
                                   "log.print_epochs": False, **overrides})


def _small(**overrides):
  """The tiny preset on 16x16 images (projections 8x8 -> D_k 8 -> 4 -> 2 -> 1)."""
  return experiment.build(_config(**overrides), SMALL)


def _np_softplus(x):
  return np.logaddexp(0.0, x)


def test_losses_are_the_official_per_discriminator_bce_and_the_mean_g_loss():
  exp = experiment.build(_config())
  v = exp.variant
  rng = np.random.RandomState(0)
  real, fake = rng.randn(2, 3, 10) * 2
  got_d = v.discriminator_losses(jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32))
  # train.py: dloss = (mean softplus(-D(x)) + mean softplus(D(G z))) / 2 for each k.
  want_d = (_np_softplus(-real).mean(1) + _np_softplus(fake).mean(1)) / 2
  np.testing.assert_allclose(got_d, want_d, rtol=1e-5)
  # gloss = of2r / K summed over k: the mean over k of mean softplus(-D_k(G z)).
  got_g = v.generator_losses(jnp.asarray(fake, jnp.float32))
  np.testing.assert_allclose(got_g, _np_softplus(-fake).mean(1), rtol=1e-5)
  smooth = dataclasses.replace(v, label_smoothing=0.9)
  h = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
  want_s = (0.9 * _np_softplus(-real) + 0.1 * _np_softplus(real) - h).mean(1) / 2 + \
      _np_softplus(fake).mean(1) / 2
  np.testing.assert_allclose(smooth.discriminator_losses(jnp.asarray(real, jnp.float32),
                                                         jnp.asarray(fake, jnp.float32)),
                             want_s, rtol=1e-5)


@pytest.mark.parametrize("strategy,devices", [("map", 1), ("shard", 4)])
def test_strategies_evaluate_and_differentiate_like_a_loop(strategy, devices, rbg_prng):
  """Logits and parameter gradients of every strategy = K separate discriminators."""
  module = rp.RPDiscriminator(features=2)
  k = 4
  mesh = sharding.make_mesh(devices) if strategy == "shard" else None
  stack = rp.DiscriminatorStack(module, k, strategy, map_batch_size=3, mesh=mesh)
  params = jax.jit(stack.init, static_argnums=1)(jax.random.PRNGKey(0), (8, 8, 1))
  if strategy == "shard":   # the stacked leaves split along K over the devices
    params = jax.device_put(params, stack.param_sharding(params))
    assert params["c0_w"].sharding.spec[0] == "data"
    assert {s.data.shape[0] for s in params["c1_w"].addressable_shards} == {k // devices}
  x = jax.random.normal(jax.random.PRNGKey(1), (k, 3, 8, 8, 1))

  def loss(p, apply):
    return jnp.sum(jnp.sin(apply(p, x)) * jnp.arange(1, 4))

  def loop(p, x):
    return jnp.stack([module.apply({"params": jax.tree.map(lambda a, i=i: a[i], p)}, x[i])
                      for i in range(k)])
  got = jax.jit(lambda p: (stack.apply(p, x), jax.grad(loss)(p, stack.apply)))(params)
  want = jax.jit(lambda p: (loop(p, x), jax.grad(loss)(p, loop)))(params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  # The K discriminators were initialised independently.
  assert not np.allclose(params["c0_w"][0], params["c0_w"][1])


def _reference_step(v, state, batch, rng):
  """The official loop (train.py) with K single discriminators: G step = one G forward pass,
  dL/dG(z) accumulated over k (each D_k on its own projection), one backward pass through G and
  one Adam step; then each D_k its own loss, gradient and Adam step on the updated G's batch."""
  k_g, k_d = jax.random.split(rng)
  bank = state.d.constants["projection"]
  lr = v.lr_schedule(0)
  num = v.num_discriminators
  d_k = [jax.tree.map(lambda a, i=i: a[i], state.d.params) for i in range(num)]

  def logits(params, x, i):
    proj = rp.project(x, bank[..., i:i + 1], v.projection_stride)
    return v.discriminator.apply({"params": params}, proj)

  g = state.g
  x_gen, g_vjp = jax.vjp(lambda p: v.generate_batch(p, g.constants, k_g), g.params)
  g_losses, dx = [], jnp.zeros_like(x_gen)
  for i in range(num):
    loss, grad = jax.value_and_grad(lambda x, i=i: gan_losses.generator_loss(
        logits(d_k[i], x, i)) / num)(x_gen)
    g_losses.append(loss * num)
    dx = dx + grad
  grads, = g_vjp(dx)
  updates, _ = v.g_tx.update(grads, g.opt_state, g.params)
  g_params = jax.tree.map(lambda p, u: p - lr * u, g.params, updates)
  x_gen = v.generate_batch(g_params, g.constants, k_d)
  d_params, d_opts, d_losses = [], [], []
  for i in range(num):
    def d_loss(p, i=i):
      return gan_losses.discriminator_gan_loss(logits(p, batch["x"], i), logits(p, x_gen, i))
    loss, grad = jax.value_and_grad(d_loss)(d_k[i])
    opt_i = jax.tree.map(lambda a, i=i: a[i], state.d.opt_state)
    updates, opt_i = v.d_tx.update(grad, opt_i, d_k[i])
    d_params.append(jax.tree.map(lambda p, u: p - lr * u, d_k[i], updates))
    d_opts.append(opt_i)
    d_losses.append(loss)
  stack = lambda *xs: jnp.stack(xs)  # noqa: E731
  return (g_params, jax.tree.map(stack, *d_params), jax.tree.map(stack, *d_opts),
          jnp.stack(g_losses), jnp.stack(d_losses))


def _step_against_reference(strategy, devices, monkeypatch):
  """Also checks that both steps project with the state's bank (= the seed's draw), the D step
  real and generated images in one call, and that the step leaves the bank unchanged."""
  exp = _small(**{"model.k_strategy": strategy, "model.num_projections": 2,
                  "model.k_map_batch_size": 2, "num_devices": devices})
  v = exp.variant
  num = v.num_discriminators
  assert v.discriminators.strategy == strategy
  state = jax.jit(v.init)(jax.random.PRNGKey(0), exp.init_batch)
  np.testing.assert_array_equal(state.d.constants["projection"],
                                rp.draw_projections(1, num, 8, 3))   # config.seed = 1
  batch = exp.feeder.batch(exp.feeder.put(None), {k: r[0] for k, r in exp.epoch_plan(0).items()})
  rng = jax.random.PRNGKey(5)
  calls, project = [], rp.project
  with monkeypatch.context() as patch:
    patch.setattr(rp, "project", lambda x, b, s: calls.append((x.shape[0], b)) or project(x, b, s))
    new, metrics = jax.jit(v.train_step)(state, batch, rng)
  assert [n for n, _ in calls] == [8, 16]   # G step: 8 generated; D step: 8 real + 8 generated
  assert calls[0][1] is calls[1][1] and calls[0][1].shape == (8, 8, 3, num)   # one bank
  np.testing.assert_array_equal(new.d.constants["projection"], state.d.constants["projection"])
  g_params, d_params, d_opt, g_losses, d_losses = jax.jit(
      lambda s, b: _reference_step(v, s, b, rng))(state, batch)
  for got, want in ((new.g.params, g_params), (new.d.params, d_params), (new.d.opt_state, d_opt)):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for i in range(v.num_discriminators):   # each discriminator's losses are logged
    np.testing.assert_allclose(metrics[f"loss_d_k{i:02d}"], d_losses[i], rtol=1e-5)
    np.testing.assert_allclose(metrics[f"loss_gen_k{i:02d}"], g_losses[i], rtol=1e-5)
  np.testing.assert_allclose(metrics["loss_d"], jnp.mean(d_losses), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss_d_max"], jnp.max(d_losses), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss_gen"], jnp.mean(g_losses), rtol=1e-5)
  assert set(metrics) == set(v.metric_keys)


def test_stacked_step_equals_a_loop_of_single_discriminator_steps(rbg_prng, monkeypatch):
  _step_against_reference("vmap", 1, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("strategy,devices", [("map", 1), ("shard", 2)])
def test_stacked_step_equals_a_loop_for_the_other_strategies(rbg_prng, monkeypatch, strategy,
                                                            devices):
  _step_against_reference(strategy, devices, monkeypatch)


def test_discriminator_updates_are_independent(rbg_prng):
  """Perturbing D_k's gradient changes D_k's update only, even with historical averaging and a
  global-norm clip in the optimizer (it is vmapped over K, so the norm is per discriminator)."""
  exp = _small(**{"optim.historical_averaging_d": 1e-2})
  v = exp.variant
  v = dataclasses.replace(v, d_tx=optax.chain(optax.clip_by_global_norm(1e-3), v.d_tx))
  state = jax.jit(v.init)(jax.random.PRNGKey(0), exp.init_batch)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), state.d.params)
  bumped = jax.tree.map(lambda g: g.at[1].multiply(-7.0), grads)
  step = jax.jit(lambda g: v.discriminator_step(state.d, g, 2e-4))
  a, b = step(grads), step(bumped)
  for x, y in zip(jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))):
    assert x.shape[0] == 2   # every leaf is stacked, the Adam count included
    np.testing.assert_array_equal(x[0], y[0])
  assert not np.allclose(a.params["c0_w"][1], b.params["c0_w"][1])


def test_presets_build_and_initialise(tmp_path_factory):
  folder = make_folder(tmp_path_factory.mktemp("faces") / "data", counts=(3, 2, 3))
  faces = {}
  for exp_name in ("face1", "face12", "face24", "face48", "dog12"):
    config = load_config("rpgan", exp_name, **{  # the 8-image folder: small batches
        "data.dir": str(folder), "num_devices": 1, "data.init_size": 4, "train.batch_size": 4,
        "train.steps_per_epoch": 2})
    exp = experiment.build(config)
    state = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), exp.init_batch)
    faces[exp_name] = (exp.variant, state)
  v, state = faces["face48"]
  assert v.num_discriminators == 48 and state.d.params["c0_w"].shape == (48, 4, 4, 1, 128)
  assert state.d.constants["projection"].shape == (8, 8, 3, 48)
  v, state = faces["face1"]
  assert v.num_discriminators == 1 and v.projection_bank is None
  assert state.d.params["c0_w"].shape == (1, 4, 4, 3, 64) and not state.d.constants
  v, state = faces["dog12"]
  assert v.train_shape == (128, 128, 3) and v.d_input_shape == (64, 64, 1)
  assert state.g.params["c1_w"].shape == (200, 16 * 2048)
  assert len(v.metric_keys) == 9 + 2 * 12 and rpgan.per_discriminator_key("loss_d", 11) in (
      v.metric_keys)
  for arg, k, shape in (("k=24", 24, (32, 32, 3)), ("k=0", 1, (32, 32, 3)),
                        ("upsample64", 48, (64, 64, 3))):
    exp = experiment.build(_config(arg=arg, **{"train.steps_per_epoch": 1}))
    jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), exp.init_batch)
    assert (exp.variant.num_discriminators, exp.variant.train_shape) == (k, shape)
    metrics = {e.name: e for e in exp.evaluators}["metrics"]
    assert "classifier_kid" in metrics.suite.metrics
  exp = experiment.build(_config("mnist_rpgan", arg="k=12", **{"train.steps_per_epoch": 1}))
  assert exp.variant.train_shape == (32, 32, 1) and exp.variant.d_input_shape == (16, 16, 1)
  assert exp.variant.pad == 2 and exp.variant.pad_value == -1.0
  small = _config("cifar10_rpgan", arg="small")
  assert small.model.num_projections == 12 and small.train.steps_per_epoch == 100
  # The full schedules fit the real training sets (50,000 CIFAR-10, 60,000 MNIST, 202,599 CelebA
  # images): about the official 1e5 iterations.
  from itgan_jax.variants import base  # pylint: disable=import-outside-toplevel
  for name, arg, n, iterations in (("cifar10_rpgan", None, 50000, 99968),
                                   ("mnist_rpgan", None, 60000, 18740),
                                   ("rpgan", "face48", 202599, 100000)):
    config = load_config(name, arg)
    assert base.steps_per_epoch(config.train, n) * config.train.num_epochs == iterations


def test_dog12_crops_are_random_per_use_and_planned(tmp_path):
  """dog12: a random window per use (official real.py crop=True), its salt in the epoch plan."""
  folder = make_folder(tmp_path / "dogs", counts=(3, 2, 3))
  exp = experiment.build(load_config("rpgan", "dog12,tiny", **{
      "data.dir": str(folder), "num_devices": 1}))
  assert exp.feeder.streams["x"] == ("x", "idx", "crop")
  plans = [exp.epoch_plan(e) for e in (0, 0, 1)]
  assert plans[0]["crop"].shape == plans[0]["idx"].shape
  np.testing.assert_array_equal(plans[0]["crop"], plans[1]["crop"])
  assert not np.array_equal(plans[0]["crop"], plans[2]["crop"])
  x = np.asarray(exp.feeder.chunk_inputs({k: v[:1] for k, v in plans[0].items()},
                                         sharding.make_mesh(1))["x"])
  ds = exp.dataset
  np.testing.assert_array_equal(x[0], ds.read(plans[0]["idx"][0], salts=plans[0]["crop"][0]))
  exp.feeder.close()
  faces = experiment.build(load_config("rpgan", "face12,tiny", **{
      "data.dir": str(folder), "num_devices": 1}))
  assert faces.feeder.streams["x"] == ("x", "idx") and "crop" not in faces.epoch_plan(0)


def test_resolution_changes_are_undone_for_samples():
  exp = experiment.build(_config("mnist_rpgan", arg="tiny"))
  v = exp.variant
  x = jnp.asarray(np.random.RandomState(0).uniform(-1, 1, (2, 28, 28, 1)), jnp.float32)
  padded = v.to_train(x)
  assert padded.shape == (2, 32, 32, 1) and float(padded[0, 0, 0, 0]) == -1.0
  np.testing.assert_array_equal(v.to_data(padded), x)
  up = experiment.build(_config(arg="tiny,upsample64")).variant
  y = jnp.asarray(np.random.RandomState(1).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  assert up.to_train(y).shape == (2, 64, 64, 3)
  flat = jnp.full((1, 32, 32, 3), 0.25)
  np.testing.assert_allclose(up.to_data(up.to_train(flat)), flat, atol=1e-6)


@pytest.mark.parametrize("overrides,match", [
    ({"model.num_projections": -1}, "num_projections=-1 must be an integer >= 0"),
    ({"model.projection_size": 40}, "larger than the 32x32 training images"),
    ({"model.projection_size": 1}, "projection_size=1 must be >= model.projection_stride"),
    ({"model.projection_size": 7}, "are 15x15; the discriminators need a power-of-two side"),
    ({"model.k_strategy": "pmap"}, "k_strategy='pmap' must be one of"),
    ({"model.k_strategy": "shard", "num_devices": 4, "model.num_projections": 6},
     "K must be a multiple of 4"),
    ({"model.k_strategy": "map", "model.k_map_batch_size": 0}, "k_map_batch_size=0"),
    ({"model.name": "conv"}, "trains the rpgan model family"),
    ({"loss.generator": "feature_matching"}, "the rpgan variant offers"),
    ({"data.pad_to": 33}, "data.pad_to=33"),
    ({"data.upsample": 0}, "data.upsample=0"),
    ({"model.projection_file": "nothing.npz"}, "does not exist"),
    ({"model.num_projections": 0, "model.projection_file": "x.npz"}, "full-image baseline"),
    ({"train.num_seeds": 2}, "train.num_seeds > 1 would give every seed member 0's"),
    ({"data.upsample": 3}, "images are 96x96: set data.pad_to"),
])
def test_bad_keys_get_clear_errors(overrides, match):
  with pytest.raises(ValueError if "does not exist" not in match else FileNotFoundError,
                     match=match):
    experiment.build(_config(**overrides))


def test_mnist_needs_padding_and_bfloat16_compute_keeps_float32_losses():
  with pytest.raises(ValueError, match="images are 28x28: set data.pad_to"):
    experiment.build(_config("mnist_rpgan", **{"data.pad_to": None}))
  exp = _small(**{"precision.compute_dtype": "bfloat16"})
  v = exp.variant
  state = jax.eval_shape(v.init, jax.random.PRNGKey(0), exp.init_batch)
  batch = {"x": jax.ShapeDtypeStruct((8, 16, 16, 3), jnp.float32)}
  seen = []
  module_apply = type(v.discriminator).apply

  def spy(self, variables, x, *a, **k):
    seen.append(x.dtype)
    return module_apply(self, variables, x, *a, **k)
  try:
    type(v.discriminator).apply = spy
    new, metrics = jax.eval_shape(v.train_step, state, batch, jax.random.PRNGKey(1))
  finally:
    type(v.discriminator).apply = module_apply
  assert seen and set(seen) == {jnp.dtype(jnp.bfloat16)}
  assert all(m.dtype == jnp.float32 for m in metrics.values())
  assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(new.d.params))


def test_projection_file_is_used_and_checked(tmp_path):
  bank = rp.draw_projections(9, 2, 8, 3)
  np.savez(tmp_path / "K2.npz", nfilt=2, p0=bank[..., :1], p1=bank[..., 1:], s0=2, s1=2)
  exp = experiment.build(_config(**{"model.projection_file": str(tmp_path / "K2.npz")}))
  np.testing.assert_array_equal(exp.variant.projection_bank, bank)
  with pytest.raises(ValueError, match="holds 2 projections but model.num_projections=3"):
    experiment.build(_config(**{"model.projection_file": str(tmp_path / "K2.npz"),
                                "model.num_projections": 3}))


def _records(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_and_resume_are_bit_exact(tmp_path, rbg_prng, monkeypatch):
  serve_datasets(monkeypatch, SMALL)
  overrides = {"optim.g_ema_rate": 0.01, "optim.historical_averaging_d": 1e-3,
               "loss.label_smoothing": 0.9}
  experiment.train(_config(**overrides), str(tmp_path / "full"))
  experiment.train(_config(**overrides, **{"train.num_epochs": 1}), str(tmp_path / "resumed"))
  experiment.train(_config(**overrides), str(tmp_path / "resumed"))
  full, resumed = _records(tmp_path / "full"), _records(tmp_path / "resumed")
  assert [r["epoch"] for r in full] == [1, 2]
  for a, b in zip(full, resumed):
    for key in ("loss_d", "loss_gen", "loss_d_k00", "loss_gen_k01", "d_real", "d_fake"):
      assert a[key] == b[key], key
  exp = experiment.build(_config(**overrides))
  template = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), exp.init_batch)
  states = [Checkpointer(tmp_path / d).restore(template)[0] for d in ("full", "resumed")]
  for x, y in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The projections survive steps and the checkpoint: the seed's draw, in the restored state.
  np.testing.assert_array_equal(states[1].d.constants["projection"],
                                rp.draw_projections(1, 2, 8, 3))
  assert states[0].g.ema is not None and states[0].d.params["c0_w"].shape[0] == 2
  assert (tmp_path / "full" / "samples" / "epoch_0002.png").exists()
  assert (tmp_path / "full" / "curves.png").exists()


def _assert_d_split_along_k(state, k: int, devices: int):
  """D's stacked leaves (parameters, every Adam moment and count, historical averages) split
  along K over the 'data' axis, K / devices rows per device; every other leaf replicated."""
  stacked = jax.tree.leaves((state.d.params, state.d.opt_state))
  # parameters, Adam's mu, nu and count, the historical averages: all of them checked
  assert len(stacked) > 3 * len(jax.tree.leaves(state.d.params)) + 1
  for leaf in stacked:
    sharding = getattr(leaf, "sharding", leaf)
    assert tuple(sharding.spec)[:1] == ("data",) and not sharding.is_fully_replicated, sharding
    if hasattr(leaf, "addressable_shards"):
      assert len(leaf.addressable_shards) == devices
      assert {s.data.shape[0] for s in leaf.addressable_shards} == {k // devices}
  for leaf in jax.tree.leaves((state.step, state.rng, state.g, state.d.constants)):
    assert getattr(leaf, "sharding", leaf).is_fully_replicated


def test_shard_keeps_d_split_in_the_loop_equals_vmap_and_resumes_bit_exactly(tmp_path, rbg_prng,
                                                                           monkeypatch):
  """k_strategy='shard' on 4 devices: the loop trains and checkpoints D's stacked leaves split
  along K (the variant's `state_sharding`), a restore places them so again, the run matches
  'vmap' on one device, and a resume from the epoch-1 checkpoint is bit-exact."""
  serve_datasets(monkeypatch, SMALL)
  k, devices = 4, 4
  common = {"model.num_projections": k, "optim.historical_averaging_d": 1e-3}
  shard = {**common, "model.k_strategy": "shard", "num_devices": devices}
  saved = record_saved_shardings(monkeypatch)
  experiment.train(_config(**shard), str(tmp_path / "full"))
  experiment.train(_config(**shard, **{"train.num_epochs": 1}), str(tmp_path / "resumed"))
  experiment.train(_config(**shard), str(tmp_path / "resumed"))
  assert [step for step, _ in saved] == [2, 4, 2, 4]   # the resumed run saved after its restore
  for _, shardings in saved:
    _assert_d_split_along_k(shardings, k, devices)
  experiment.train(_config(**common, **{"model.k_strategy": "vmap"}), str(tmp_path / "vmap"))

  exp = experiment.build(_config(**shard))
  mesh = sharding.make_mesh(devices)
  template = loop.abstract_state(exp, 0)
  for strategy in ("vmap", "map"):   # the other strategies keep the state replicated
    other = experiment.build(_config(**common, **{"model.k_strategy": strategy,
                                                  "num_devices": devices}))
    assert other.variant.state_sharding(template, mesh) is None
  states = {}
  for run in ("full", "resumed", "vmap"):   # restored as the loop restores: the hook's placement
    with Checkpointer(tmp_path / run) as ckpt:
      states[run] = ckpt.restore(template, sharding=chunk.state_sharding(exp, mesh))[0]
  _assert_d_split_along_k(states["full"], k, devices)
  for x, y in zip(jax.tree.leaves(states["full"]), jax.tree.leaves(states["resumed"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  full, resumed, vmap = (_records(tmp_path / run) for run in ("full", "resumed", "vmap"))
  keys = [key for key in full[0] if key.startswith(("loss", "d_"))]
  assert len(keys) == 8 + 2 * k and len(full) == len(resumed) == len(vmap) == 2
  for a, b, c in zip(full, resumed, vmap):
    assert all(a[key] == b[key] for key in keys)
    # 4 devices reduce over the batch and over K in another order than one device: float32
    # rounding (measured: <= 6e-8 relative on these losses after 4 steps).
    np.testing.assert_allclose([a[key] for key in keys], [c[key] for key in keys], rtol=1e-6)
  # The same parameters and optimizer states up to that rounding carried through 4 Adam steps
  # (measured: <= 6e-8 absolute on the parameters, <= 1.5e-8 on the optimizer states; atol
  # covers the near-zero entries, rtol the rest).
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(states["full"]),
                          jax.tree.leaves(states["vmap"])):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7,
                               err_msg=jax.tree_util.keystr(path))
