"""The unsupervised GAN variant: its losses against NumPy, its configs, a tiny run and its resume."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.losses import gan as gan_losses
from itgan_jax.train.checkpoint import Checkpointer
from itgan_jax.variants import gan
from tests.helpers import fake_dataset, load_config, serve_datasets


def _fake_cifar(n_train=256, n_test=64):
  return fake_dataset("cifar10", (32, 32, 3), n_train, n_test)


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
  data = _fake_cifar()
  serve_datasets(monkeypatch, data)


def _config(name="cifar10_gan", **overrides):
  return load_config(name, "tiny", **{"num_devices": 1, "log.progress": False,
                                      "log.print_epochs": False, **overrides})


def _np_softplus(x):
  return np.logaddexp(0.0, x)


def test_discriminator_loss_with_one_sided_smoothing_matches_numpy():
  rng = np.random.RandomState(1)
  d_real, d_fake = rng.randn(2, 50).astype(np.float64) * 3
  for alpha in (1.0, 0.9, 0.75):
    # 0.5 E[-alpha log s(d) - (1-alpha) log(1-s(d)) - H(alpha)] + 0.5 E[-log(1 - s(d_fake))]
    h = -(alpha * np.log(alpha) + ((1 - alpha) * np.log(1 - alpha) if alpha < 1 else 0.0))
    real = alpha * _np_softplus(-d_real) + (1 - alpha) * _np_softplus(d_real) - h
    want = 0.5 * real.mean() + 0.5 * _np_softplus(d_fake).mean()
    got = gan_losses.discriminator_gan_loss(jnp.asarray(d_real, jnp.float32),
                                            jnp.asarray(d_fake, jnp.float32), alpha)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("kind", ["minimax", "non_saturating", "kl_target"])
def test_generator_losses_match_numpy(kind):
  d = np.random.RandomState(2).randn(64) * 2
  p = 1 / (1 + np.exp(-d))
  t = 0.375
  want = {"minimax": np.mean(np.log(1 - p)), "non_saturating": np.mean(-np.log(p)),
          "kl_target": np.mean(t * np.log(t / p) + (1 - t) * np.log((1 - t) / (1 - p)))}[kind]
  got = gan_losses.generator_loss(jnp.asarray(d, jnp.float32), kind, t)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_step_uses_the_one_logit_losses_and_updated_discriminator(rbg_prng):
  """The step's reported losses are the formulas on D's single logit; G sees the new D."""
  exp = experiment.build(_config(**{"loss.label_smoothing": 0.9, "train.g_steps_per_d_step": 2}))
  v = exp.variant
  state = jax.jit(v.init)(jax.random.PRNGKey(0), exp.init_batch)
  batch = exp.feeder.batch(exp.feeder.put(None), {k: r[0] for k, r in exp.epoch_plan(0).items()})
  k_d, k_g = jax.random.split(jax.random.PRNGKey(3))
  lr = v.lr_schedule(0)

  @jax.jit  # one program (op-by-op dispatch or three compilations cost more)
  def run(state, batch):
    new, metrics = v.train_step(state, batch, jax.random.PRNGKey(3))
    d, aux = v.discriminator_update(state, batch, k_d, lr)
    g, _ = v.generator_update(state.g, d, batch, jax.random.fold_in(k_g, 0), lr)
    _, loss = v.generator_update(g, d, batch, jax.random.fold_in(k_g, 1), lr)
    return new, metrics, aux, loss
  new, metrics, aux, loss = run(state, batch)
  assert set(metrics) == set(v.metric_keys)
  np.testing.assert_allclose(aux["loss_d"], metrics["loss_d"], rtol=1e-6)
  np.testing.assert_allclose(loss, metrics["loss_gen"], rtol=1e-5)
  assert int(new.step) == 1


def test_configs_select_their_techniques():
  base, md = experiment.build(_config()), experiment.build(_config("cifar10_md_gan"))
  assert (base.variant.generator_loss, base.variant.g_steps_per_d_step) == ("non_saturating", 1)
  assert (md.variant.generator_loss, md.variant.g_steps_per_d_step) == ("minimax", 3)
  assert md.variant.discriminator.minibatch_kernels > 0 and md.variant.discriminator.input_noise
  assert not md.variant.discriminator.batch_independent
  fm = experiment.build(_config(**{"loss.generator": "feature_matching"}))
  assert set(fm.feeder.streams) == {"x", "x_fm"} and set(base.feeder.streams) == {"x"}
  ema = experiment.build(_config(**{"optim.g_ema_rate": 0.01}))
  state = jax.eval_shape(ema.variant.init, jax.random.PRNGKey(0), ema.init_batch)
  assert state.g.ema is not None and state.d.ema is None


def test_a_classifier_evaluator_is_refused():
  config = _config()
  config.evals.test_error = dict(kind="classifier_error", every_epochs=1, batch_size=10)
  with pytest.raises(ValueError, match="offers no 'classifier_error'"):
    experiment.build(config)


def _records(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_and_resume_are_bit_exact(tmp_path, rbg_prng):
  config = _config(**{"optim.g_ema_rate": 0.01, "optim.historical_averaging_d": 1e-3})
  experiment.train(config, str(tmp_path / "full"))
  experiment.train(_config(**{"optim.g_ema_rate": 0.01, "optim.historical_averaging_d": 1e-3,
                              "train.num_epochs": 1}), str(tmp_path / "resumed"))
  experiment.train(config, str(tmp_path / "resumed"))
  full, resumed = _records(tmp_path / "full"), _records(tmp_path / "resumed")
  assert [r["epoch"] for r in full] == [1, 2]
  for a, b in zip(full, resumed):
    for key in ("loss_d", "loss_gen", "d_real", "d_fake"):
      assert a[key] == b[key], key
  exp = experiment.build(config)
  template = jax.eval_shape(exp.variant.init, jax.random.PRNGKey(0), exp.init_batch)
  states = [Checkpointer(tmp_path / d).restore(template)[0] for d in ("full", "resumed")]
  for x, y in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert (tmp_path / "full" / "samples" / "epoch_0002.png").exists()
  assert (tmp_path / "full" / "curves.png").exists()


def test_real_logit_rejects_class_logits():
  with pytest.raises(ValueError, match="one output logit"):
    gan.real_logit(jnp.zeros((4, 10)))
