"""A few training steps under config.precision: bfloat16 compute gives finite losses, the same
shapes and float32 parameters/optimizer state; float32 is bit for bit the code before the switch.

"Before the switch" is the experiment with no matmul precision set (`matmul_precision=None`, JAX's
own setting) and float32 compute (no casts); XLA:CPU computes float32 products alike at every
precision level, so the faithful default ('highest') must not change a bit on CPU. The conv GAN
runs compile for about a minute each on 2 CPU cores and are marked slow; the MLP runs are not.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.train import chunk, loop, sharding
from tests.helpers import fake_dataset, load_config, serve_datasets
from tests.test_precision import lowered_chunk_text, matmul_ops

_FAKE = {"mnist": fake_dataset("mnist", (28, 28, 1), 1000, 200),
         "cifar10": fake_dataset("cifar10", (32, 32, 3), 256, 64)}
_STEPS = 2


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
  serve_datasets(monkeypatch, *_FAKE.values())


def _config(name, **overrides):
  return load_config(name, "tiny", **{"num_devices": 1, "log.progress": False,
                                      "log.print_epochs": False, **overrides})


def _train(exp):
  """(initial state, state and metrics after `_STEPS` steps, compiled HLO text) on one device."""
  mesh = sharding.make_mesh(1)
  state = chunk.init_state(exp, mesh, seed=0)
  init = jax.device_get(state)
  run = chunk.compile_chunk(exp, mesh, state, _STEPS)
  state, metrics = run(state, epoch=0)
  return init, jax.device_get(state), jax.device_get(metrics), run.compiled.as_text()


def _check_bfloat16_run(name):
  exp = experiment.build(_config(name, **{"precision.compute_dtype": "bfloat16"}))
  assert exp.variant.compute_dtype == "bfloat16"
  init, state, metrics, _ = _train(exp)
  # Finite float32 losses of the expected shape, every metric of the variant.
  assert set(metrics) == set(exp.variant.metric_keys)
  for key, value in metrics.items():
    assert value.shape == (_STEPS,) and value.dtype == np.float32, key
    assert np.all(np.isfinite(value)), (key, value)
  # The state has the float32 layout of the float32 experiment: parameters, constants,
  # optimizer state and EMA stay float32 (only the forward passes are cast).
  reference = loop.abstract_state(experiment.build(_config(name)), 0)
  got = jax.tree.map(lambda x: (x.shape, x.dtype), state)
  want = jax.tree.map(lambda x: (x.shape, x.dtype), reference)
  assert got == want
  floating = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floating and all(x.dtype == np.float32 for x in floating)
  assert all(np.all(np.isfinite(x)) for x in floating)
  # It trained: both players moved.
  for player in ("g", "d"):
    before = jax.tree.leaves(getattr(init, player).params)
    after = jax.tree.leaves(getattr(state, player).params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), player
  # Samples (and D's outputs) come back float32 with the data's shape.
  z = exp.variant.sample_latent(jax.random.PRNGKey(3), 4)
  samples = jax.jit(exp.variant.generate)(state, z)
  assert samples.shape == (4,) + exp.dataset.image_shape and samples.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(samples)))
  # The program handed to XLA multiplies in bfloat16 (XLA:CPU then upcasts bf16 products to
  # f32 internally; GPUs and TPUs run them as bf16).
  ops = matmul_ops(lowered_chunk_text(exp))
  assert ops and all("xbf16>" in line and "xf32>" not in line.split(" : ")[-1].split("->")[0]
                     for line in ops)
  return exp, state


def test_mnist_ssl_bfloat16_steps_are_finite_with_float32_state():
  exp, state = _check_bfloat16_run("mnist_ssl")
  logits = jax.jit(exp.variant.classify)(state, jnp.zeros((3, 28, 28, 1)))
  assert logits.shape == (3, 10) and logits.dtype == jnp.float32


@pytest.mark.slow
def test_cifar10_gan_bfloat16_steps_are_finite_with_float32_state():
  _check_bfloat16_run("cifar10_gan")


def _check_float32_unchanged(name):
  config = _config(name)
  with config.unlocked():
    del config["precision"]  # a config written before the switch
  exp = experiment.build(config)
  assert exp.matmul_precision == "highest" and exp.variant.compute_dtype == "float32"
  before_switch = dataclasses.replace(exp, matmul_precision=None)
  _, state, metrics, hlo = _train(exp)
  _, state0, metrics0, hlo0 = _train(before_switch)
  # The compiled step asks for float32 products ...
  assert "operand_precision={highest,highest}" in hlo
  assert "operand_precision" not in hlo0
  # ... and on CPU computes exactly what it computed before the switch.
  jax.tree.map(np.testing.assert_array_equal, metrics, metrics0)
  jax.tree.map(np.testing.assert_array_equal, state, state0)


def test_mnist_ssl_float32_is_bit_identical_to_the_code_before_the_switch():
  _check_float32_unchanged("mnist_ssl")


@pytest.mark.slow
def test_cifar10_gan_float32_is_bit_identical_to_the_code_before_the_switch():
  _check_float32_unchanged("cifar10_gan")
