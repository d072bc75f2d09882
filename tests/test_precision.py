"""config.precision: the matmul precision reaches the traced step, the bfloat16 compute switch.

The HLO checks lower the real chunk function (`train.chunk.make_chunk_fn`) of the tiny configs
and read every dot and convolution of the program (forward, autodiff and the hand-written conv
VJP), for two settings, so a precision that stops reaching any of them fails. The training runs
(a few bfloat16 steps, bit-identity of float32 with the pre-switch code) are in
tests/test_precision_training.py.
"""

from __future__ import annotations

import json
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax import experiment
from itgan_jax.nn import conv as conv_lib
from itgan_jax.nn.batchnorm import BatchStatNorm
from itgan_jax.nn.vbn import VirtualBatchNorm
from itgan_jax.train import chunk, loop, run_config, sharding
from itgan_jax.train import precision as precision_lib
from tests.helpers import REPO, fake_dataset, load_config, serve_datasets

_FAKE = {"mnist": fake_dataset("mnist", (28, 28, 1), 1000, 200),
         "cifar10": fake_dataset("cifar10", (32, 32, 3), 256, 64)}
_HLO_LEVEL = {"highest": "HIGHEST", "float32": "HIGHEST", "high": "HIGH", "tensorfloat32": "HIGH"}


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
  serve_datasets(monkeypatch, *_FAKE.values())


def _config(name, **overrides):
  return load_config(name, "tiny", **{"num_devices": 1, "log.progress": False,
                                      "log.print_epochs": False, **overrides})


def lowered_chunk_text(exp) -> str:
  """StableHLO of one training step as the loop jits it (nothing compiled or run)."""
  mesh = sharding.make_mesh(1)
  rows = {k: v[:1] for k, v in exp.epoch_plan(0).items()}
  lowered = chunk.make_chunk_fn(exp, mesh, 1).lower(
      loop.abstract_state(exp, 0), exp.feeder.put(mesh), exp.feeder.chunk_inputs(rows, mesh))
  return lowered.as_text()


def matmul_ops(text: str) -> list[str]:
  """The dot_general and convolution lines of a StableHLO module."""
  return [line for line in text.splitlines()
          if "stablehlo.dot_general" in line or "stablehlo.convolution" in line]


def op_precision(line: str) -> str | None:
  """HIGHEST / HIGH / DEFAULT of a dot_general (`precision = [X, X]`) or convolution
  (`#stablehlo<precision X>`) line; None when none is written."""
  found = re.findall(r"precision = \[(\w+), (\w+)\]|#stablehlo<precision (\w+)>", line)
  levels = {level for match in found for level in match if level}
  assert len(levels) <= 1, line
  return levels.pop() if levels else None


# --- the config keys -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs").glob("*.py")))
def test_every_config_has_the_precision_keys_at_their_faithful_defaults(name):
  config = load_config(name)
  assert config.precision.matmul == "highest"
  assert config.precision.compute_dtype == "float32"
  assert precision_lib.from_config(config) == precision_lib.Precision("highest", "float32")


def test_absent_section_means_highest_float32():
  config = _config("mnist_ssl")
  with config.unlocked():
    del config["precision"]
  assert precision_lib.from_config(config) == precision_lib.Precision("highest", "float32")
  assert experiment.build(config).matmul_precision == "highest"


@pytest.mark.parametrize("key, value, match", [
    ("precision.matmul", "fp32", r"config.precision.matmul='fp32' is not a matmul precision"),
    ("precision.matmul", "BF16_BF16_F32", r"precision.matmul='BF16_BF16_F32'"),
    ("precision.compute_dtype", "float16", r"config.precision.compute_dtype='float16'; use one"),
])
def test_bad_values_are_refused_before_data_loads(key, value, match, monkeypatch):
  monkeypatch.setattr(experiment, "load_data", lambda d: pytest.fail("loaded data"))
  with pytest.raises(ValueError, match=match):
    experiment.build(_config("mnist_ssl", **{key: value}))


def test_unknown_precision_key_is_refused():
  config = _config("mnist_ssl")
  with config.unlocked():
    config.precision.dtype = "bfloat16"
  with pytest.raises(ValueError, match=r"config.precision has unknown key\(s\) \['dtype'\]"):
    experiment.validate(config)


def test_runs_stored_without_the_section_resume_and_only_the_dtype_is_refused(tmp_path):
  config = _config("mnist_ssl")
  stored = run_config.as_plain(config)
  del stored["precision"]  # a run started before config.precision existed
  (tmp_path / run_config.FILENAME).write_text(json.dumps(stored))
  assert run_config.check_resume(tmp_path, config) == {}
  config.precision.matmul = "default"  # e.g. continuing on a GPU with TF32: accepted, reported
  assert run_config.check_resume(tmp_path, config) == {"precision.matmul": ("highest", "default")}
  config.precision.compute_dtype = "bfloat16"
  with pytest.raises(run_config.ConfigMismatchError, match="precision.compute_dtype"):
    run_config.check_resume(tmp_path, config)


# --- the matmul precision reaches every product of the step -------------------------------------

@pytest.mark.parametrize("level", ["highest", "high"])
def test_mlp_step_dots_carry_the_configured_precision(level):
  text = lowered_chunk_text(experiment.build(_config("mnist_ssl", **{"precision.matmul": level})))
  ops = matmul_ops(text)
  # D's 6 layers on the stacked batches, G's 3, their backward products in both updates.
  assert len(ops) >= 30, len(ops)
  assert {op_precision(line) for line in ops} == {_HLO_LEVEL[level]}


@pytest.mark.parametrize("level", ["highest", "high"])
def test_conv_step_dots_and_convolutions_carry_the_configured_precision(level):
  text = lowered_chunk_text(experiment.build(_config("cifar10_gan", **{"precision.matmul": level})))
  ops = matmul_ops(text)
  convs = [line for line in ops if "stablehlo.convolution" in line]
  # 9 D convs + 2 G deconvs forward, in D's and G's updates, plus the backward convolutions.
  assert len(convs) >= 30, len(convs)
  assert {op_precision(line) for line in ops} == {_HLO_LEVEL[level]}


def test_default_level_writes_no_raised_precision():
  text = lowered_chunk_text(experiment.build(_config("mnist_ssl",
                                                      **{"precision.matmul": "default"})))
  assert {op_precision(line) for line in matmul_ops(text)} <= {None, "DEFAULT"}


def test_initialisation_is_traced_under_the_configured_precision(monkeypatch):
  exp = experiment.build(_config("mnist_ssl", **{"precision.matmul": "high"}))
  seen = []

  class Traced(Exception):
    pass

  def spy(self, rng, x):  # records the setting at trace time, then stops (nothing compiled)
    seen.append(jax.config.jax_default_matmul_precision)
    raise Traced
  monkeypatch.setattr(type(exp.variant), "init", spy)
  with pytest.raises(Traced):
    chunk.init_state(exp, sharding.make_mesh(1), seed=0)
  assert seen == ["high"]


def test_conv_vjp_keeps_the_forward_precision_outside_the_context():
  x = jnp.ones((2, 8, 8, 3), jnp.float32)
  w = jnp.ones((3, 3, 3, 4), jnp.float32)
  with jax.default_matmul_precision("highest"):
    _, vjp = jax.vjp(lambda x, w: conv_lib.conv2d_cpu(
        x, w, (2, 2), ((1, 1), (1, 1)), conv_lib._traced_precision()), x, w)
  jaxpr = jax.make_jaxpr(vjp)(jnp.ones((2, 4, 4, 4), jnp.float32))  # traced outside the context

  def equations(jaxpr):   # with those of nested calls (dx goes through conv2d_cpu again)
    for eqn in jaxpr.eqns:
      yield eqn
      for value in eqn.params.values():
        inner = getattr(value, "jaxpr", value)
        if hasattr(inner, "eqns"):
          yield from equations(inner)
  products = [e for e in equations(jaxpr.jaxpr)
              if e.primitive.name in ("conv_general_dilated", "dot_general")]
  assert len(products) == 1 + 9  # dx: one convolution; dw: one product per kernel tap
  for eqn in products:
    assert eqn.params["precision"] == (jax.lax.Precision.HIGHEST,) * 2, eqn


# --- the bfloat16 compute switch -----------------------------------------------------------------

def test_bfloat16_step_computes_every_product_in_bfloat16():
  text = lowered_chunk_text(experiment.build(_config(
      "cifar10_gan", **{"precision.compute_dtype": "bfloat16"})))
  ops = matmul_ops(text)
  assert len(ops) >= 30
  for line in ops:
    operands = re.search(r": \((.*)\) ->", line).group(1)
    assert re.findall(r"(bf16|f16|f32|f64)>", operands) == ["bf16", "bf16"], line
    assert op_precision(line) == "HIGHEST"
  float32_text = lowered_chunk_text(experiment.build(_config("cifar10_gan")))
  assert "bf16" not in float32_text


def test_apply_in_bfloat16_matches_numpy_and_returns_float32_gradients():
  rng = np.random.RandomState(0)
  x = rng.randn(4, 16).astype(np.float32)
  kernel, bias = rng.randn(16, 8).astype(np.float32), rng.randn(8).astype(np.float32)
  variables = {"params": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}}
  dense = nn.Dense(8)
  out = precision_lib.apply(dense, variables, jnp.asarray(x), compute_dtype="bfloat16")
  assert out.dtype == jnp.float32
  # Independent reference: operands rounded to bfloat16, products summed exactly.
  r = lambda a: np.asarray(jnp.asarray(a, jnp.bfloat16).astype(jnp.float32), np.float64)
  want = r(x) @ r(kernel) + r(bias)
  np.testing.assert_allclose(np.asarray(out), want, rtol=2e-2, atol=5e-2)
  assert np.abs(np.asarray(out) - x.astype(np.float64) @ kernel - bias).max() > 1e-4  # not f32
  grads = jax.grad(lambda v: jnp.sum(precision_lib.apply(
      dense, v, jnp.asarray(x), compute_dtype="bfloat16")))(variables)
  chex.assert_trees_all_equal_dtypes(grads, variables)
  np.testing.assert_allclose(np.asarray(grads["params"]["kernel"]),
                             np.repeat(r(x).sum(0)[:, None], 8, 1), rtol=2e-2, atol=5e-2)
  exact = precision_lib.apply(dense, variables, jnp.asarray(x), compute_dtype="float32")
  np.testing.assert_array_equal(np.asarray(exact), np.asarray(dense.apply(variables, x)))


def test_batch_and_virtual_batch_norm_use_float32_statistics_for_bfloat16_inputs():
  rng = np.random.RandomState(1)
  x = jnp.asarray(100.0 + rng.randn(64, 6), jnp.bfloat16)  # a large mean: bf16 stats would fail
  xf = np.asarray(x.astype(jnp.float32), np.float64)
  y = BatchStatNorm().apply({"params": {"bias": jnp.zeros(6, jnp.bfloat16)}}, x)
  assert y.dtype == jnp.bfloat16
  want = (xf - xf.mean(0)) / np.sqrt(1e-6 + xf.var(0))
  np.testing.assert_allclose(np.asarray(y.astype(jnp.float32)), want, atol=3e-2)
  vbn = VirtualBatchNorm(num_ref=32)
  params = {"params": {"gamma": jnp.ones(6, jnp.bfloat16), "beta": jnp.zeros(6, jnp.bfloat16)}}
  y = vbn.apply(params, x)
  assert y.dtype == jnp.bfloat16
  ref = xf[:32]
  mu_ref, s_ref = ref.mean(0), (ref ** 2).mean(0)
  mu = xf[32:] / 33 + 32 / 33 * mu_ref
  s = xf[32:] ** 2 / 33 + 32 / 33 * s_ref
  want = (xf[32:] - mu) / np.sqrt(1e-5 + s - mu ** 2)
  np.testing.assert_allclose(np.asarray(y[32:].astype(jnp.float32)), want, atol=6e-2)


def test_docs_state_the_backend_defaults():
  text = (REPO / "docs" / "precision.md").read_text()
  for needle in ("TF32", "bfloat16", "highest", "docs.jax.dev"):
    assert needle in text
