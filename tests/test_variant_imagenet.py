"""The ImageNet game (variants/imagenet.py): losses against NumPy, the simultaneous update, config
errors, and real steps of configs/imagenet128.py:tiny on a generated image folder (+ resume)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.data.base import DatasetNotFoundError
from itgan_jax.train.checkpoint import Checkpointer
from itgan_jax.variants import imagenet
from tests.helpers import fake_dataset, load_config
from tests.test_image_folder import make_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return make_folder(tmp_path_factory.mktemp("imagenet") / "data", counts=(4, 3, 5))


def _config(folder, **overrides):
  return load_config("imagenet128", "tiny", **{
      "data.dir": str(folder), "num_devices": 1, "log.progress": False,
      "log.print_epochs": False, **overrides})


def _np_softplus(x):
  return np.logaddexp(0.0, x)


def test_losses_match_a_numpy_rederivation():
  rng = np.random.RandomState(0)
  n, k = 6, 5
  logits = rng.randn(2 * n, k + 1) * 3
  labels = rng.randint(0, k, n)
  # d = log sum_k exp(l_k) - l_fake; KL(t || sigmoid(d)) = t log(t / p) + (1 - t) log((1-t)/(1-p))
  d = np.log(np.exp(logits[:, :k]).sum(1)) - logits[:, k]
  p = 1 / (1 + np.exp(-d))

  def kl(t, q):
    return t * np.log(t / q) + (1 - t) * np.log((1 - t) / (1 - q))
  real, fake = p[:n], p[n:]
  log_softmax = logits[:n] - np.log(np.exp(logits[:n]).sum(1, keepdims=True))
  want = dict(loss_d_real=kl(0.75, real).mean(), loss_d_fake=-np.log(1 - fake).mean(),
              loss_d_class=-log_softmax[np.arange(n), labels].mean() * 0.5,
              loss_gen=kl(0.375, fake).mean(), d_real=real.mean(), d_fake=fake.mean(),
              class_error=np.mean(np.argmax(logits[:n], 1) != labels))
  want["loss_d"] = want["loss_d_real"] + want["loss_d_fake"] + want["loss_d_class"]
  got = imagenet.imagenet_losses(jnp.asarray(logits, jnp.float32), jnp.asarray(labels),
                                 class_weight=0.5)
  assert set(got) == set(want)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=2e-5, atol=1e-6, err_msg=key)
  with pytest.raises(ValueError, match="joint-batch logits"):
    imagenet.imagenet_losses(jnp.zeros((5, 3)), jnp.zeros(3, jnp.int32))


def test_row_keys_depend_on_each_row_only():
  z = jax.random.uniform(jax.random.PRNGKey(0), (4, 7), minval=-1, maxval=1)
  keys = np.asarray(imagenet.row_keys(z))
  np.testing.assert_array_equal(np.asarray(imagenet.row_keys(z[::-1])), keys[::-1])
  assert len({tuple(k) for k in keys}) == 4
  changed = z.at[1, 3].add(1e-3)
  assert not np.array_equal(np.asarray(imagenet.row_keys(changed))[1], keys[1])


def test_config_errors_are_clear(folder):
  with pytest.raises(ValueError, match="init_size=3 must be an even"):
    experiment.build(_config(folder, **{"data.init_size": 3}))
  with pytest.raises(ValueError, match="set data.scale='tanh'"):
    experiment.build(_config(folder, **{"data.scale": "unit"}))
  with pytest.raises(ValueError, match="multiple of 32"):
    experiment.build(_config(folder, **{"data.image_size": 40}))
  with pytest.raises(ValueError, match="z_dist"):
    experiment.build(_config(folder, **{"model.z_dist": "normal"}))
  with pytest.raises(DatasetNotFoundError, match="does not exist"):
    experiment.build(_config(folder, **{"data.dir": str(folder / "missing")}))
  with pytest.raises(ValueError, match="reads a streaming dataset"):
    imagenet.build(_config(folder), fake_dataset("cifar10", (32, 32, 3), 8, 8))
  config = _config(folder)
  config.evals.err = dict(kind="classifier_error", every_epochs=1)
  with pytest.raises(ValueError, match="offers no 'classifier_error'"):
    experiment.build(config)


def test_build_wires_the_official_settings(folder):
  exp = experiment.build(load_config("imagenet128", None, **{
      "data.name": "image_folder", "data.dir": str(folder), "train.steps_per_epoch": 1,
      "train.batch_size": 8, "data.init_size": 4}))
  v = exp.variant
  assert (v.real_target, v.generator_target, v.class_weight) == (0.75, 0.375, 1.0)
  assert (v.latent_dim, v.latent_dist) == (8192, "uniform_pm1")
  d = v.discriminator
  assert (d.num_classes, d.minibatch_kernels, d.minibatch_dim, d.input_noise) == (3, 300, 50, 0.1)
  assert (v.generator.gf_dim, v.generator.num_ref, v.generator.out_bias) == (64, 16, -0.45)
  assert exp.init_batch.shape == (4, 128, 128, 3) and exp.init_batch.dtype == np.float32
  assert float(v.lr_schedule(7)) == pytest.approx(4e-4)
  assert set(exp.feeder.streams) == {"x", "y"}
  plan = exp.epoch_plan(0)["idx"]
  assert plan.shape == (1, 8) and len(set(plan[0])) == 8
  np.testing.assert_array_equal(plan, exp.epoch_plan(0)["idx"])


@pytest.mark.slow
def test_step_updates_both_players_from_one_forward_pass(folder):
  """D's update uses d loss_d / d theta_D, G's d loss_gen / d theta_G, both at the old params."""
  exp = experiment.build(_config(folder, **{"data.image_size": 32}))
  v = exp.variant
  state = v.init(jax.random.PRNGKey(0), jnp.asarray(exp.init_batch))
  plan = {k: r[:1] for k, r in exp.epoch_plan(0).items()}
  values = jax.device_get(exp.feeder.chunk_inputs(plan, _mesh1()))
  batch = exp.feeder.batch({}, {k: x[0] for k, x in values.items()})
  rng = jax.random.PRNGKey(3)

  def check(state, batch, rng):
    new, metrics = v.train_step(state, batch, rng)
    grad_d = jax.grad(lambda p: v.losses(p, state.g.params, state, batch, rng)[0][0])(
        state.d.params)
    grad_g = jax.grad(lambda p: v.losses(state.d.params, p, state, batch, rng)[0][1])(
        state.g.params)
    lr = v.lr_schedule(0)
    want_d = imagenet.players.apply_updates(state.d, v.d_tx, grad_d, lr)
    want_g = imagenet.players.apply_updates(state.g, v.g_tx, grad_g, lr)
    _, forward = v.losses(state.d.params, state.g.params, state, batch, rng)
    return new, metrics, want_d, want_g, forward
  new, metrics, want_d, want_g, forward = jax.jit(check)(state, batch, rng)
  for got, want in ((new.d.params, want_d.params), (new.g.params, want_g.params)):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  for key in forward:
    np.testing.assert_allclose(metrics[key], forward[key], rtol=1e-6)
  assert int(new.step) == 1


def _mesh1():
  from itgan_jax.train import sharding  # pylint: disable=import-outside-toplevel
  return sharding.make_mesh(1)


def _records(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_on_an_image_folder_and_its_resume_are_bit_exact(folder, tmp_path, rbg_prng):
  """configs/imagenet128.py:tiny through the public API: 2 epochs x 2 steps of 128x128 images
  read from the folder; then 1 epoch + a resumed epoch equal the uninterrupted run."""
  full = experiment.train(_config(folder), str(tmp_path / "full"))
  assert full["epoch"] == 2 and full["step"] == 4
  for key in imagenet.ImagenetGAN.metric_keys:
    assert np.isfinite(full[key]), key
  assert 0 < full["d_real"] < 1 and full["loss_d_class"] > 0
  assert (tmp_path / "full" / "samples" / "epoch_0002.png").exists()
  experiment.train(_config(folder, **{"train.num_epochs": 1}), str(tmp_path / "resumed"))
  experiment.train(_config(folder), str(tmp_path / "resumed"))
  a, b = _records(tmp_path / "full"), _records(tmp_path / "resumed")
  assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2]
  for x, y in zip(a, b):
    for key in ("loss_d", "loss_gen", "loss_d_class", "class_error"):
      assert x[key] == y[key], key
  exp = experiment.build(_config(folder))
  template = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), exp.init_batch)
  states = [Checkpointer(tmp_path / d).restore(template)[0] for d in ("full", "resumed")]
  for x, y in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_bfloat16_compute_reaches_both_networks_and_keeps_float32_losses(folder):
  """precision.compute_dtype=bfloat16: G's and D's convolutions take bfloat16 operands (traced
  only, no compilation), the losses and the state stay float32."""
  exp = experiment.build(_config(folder, **{"data.image_size": 32,
                                            "precision.compute_dtype": "bfloat16"}))
  v = exp.variant
  assert v.compute_dtype == "bfloat16"
  state = jax.eval_shape(v.init, jax.random.PRNGKey(0), jnp.asarray(exp.init_batch))
  n = exp.batch_size
  batch = {"x": jax.ShapeDtypeStruct((n, 32, 32, 3), jnp.float32),
           "y": jax.ShapeDtypeStruct((n,), jnp.int32)}
  jaxpr = jax.make_jaxpr(lambda s, b: v.train_step(s, b, jax.random.PRNGKey(1)))(state, batch)
  convs = [line for line in str(jaxpr).splitlines() if "conv_general_dilated[" in line]
  assert convs and all("bf16[" in line for line in convs)
  new, metrics = jax.eval_shape(lambda s, b: v.train_step(s, b, jax.random.PRNGKey(1)), state,
                                batch)
  assert {leaf.dtype for leaf in jax.tree.leaves(new.d.params)} == {jnp.dtype(jnp.float32)}
  assert metrics["loss_d"].dtype == jnp.float32 and metrics["loss_gen"].dtype == jnp.float32
