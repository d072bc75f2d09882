"""Test-error batching (evaluators/classifier_error.py): the official overlapping last batch.

Reference: the loop of `openai/improved-gan train_svhn_feature_matching.py`, re-written here in
NumPy: for t in range(ceil(N / B)): last = min((t + 1) B, N); first = last - B;
test_pred[first:last] = D(x[first:last]); errors = sum(argmax(test_pred) != y).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.evaluators import classifier_error
from itgan_jax.models.conv import ConvDiscriminator
from itgan_jax.train import sharding


def _np_batch_dependent(xb):
  """Class scores that depend on the whole batch (as minibatch features): x - batch mean."""
  f = xb[:, :10]
  return f - f.mean(0)


def _jnp_classify(state, x, use_ema=True):
  del use_ema
  f = x[:, :10] * state
  return f - jnp.mean(f, axis=0)


def _official_predictions(predict, x, batch):
  n = len(x)
  test_pred = np.zeros((n, 10))
  for t in range(int(np.ceil(n / batch))):
    last = min((t + 1) * batch, n)
    first = last - batch
    test_pred[first:last] = predict(x[first:last])
  return np.argmax(test_pred, 1)


def _official_errors(predict, x, y, batch):
  return int(np.sum(_official_predictions(predict, x, batch) != y))


def _short_last_batch_predictions(predict, x, batch):
  return np.argmax(np.concatenate([predict(x[i:i + batch]) for i in range(0, len(x), batch)]), 1)


@pytest.mark.parametrize("n,batch", [(23, 10), (26032 // 100, 7), (40, 10)])
def test_overlapping_last_batch_matches_official_loop(n, batch):
  rng = np.random.RandomState(n)
  x = rng.randn(n, 12).astype(np.float32)
  # Labels = the official predictions except every 4th: few errors, so a protocol that predicts
  # differently also counts differently.
  y = _official_predictions(_np_batch_dependent, x, batch)
  y[::4] = (y[::4] + 1) % 10
  want = _official_errors(_np_batch_dependent, x, y, batch)
  assert want == len(y[::4])
  count = jax.jit(lambda x, y: classifier_error.count_errors(_jnp_classify, jnp.float32(1), x, y,
                                                             batch, True))
  assert int(count(x, y)) == want
  if n % batch:  # the protocol matters here: a short last batch predicts differently
    short = _short_last_batch_predictions(_np_batch_dependent, x, batch)
    assert int(np.sum(short != y)) != want


def test_fewer_examples_than_a_batch_is_one_batch():
  x = np.random.RandomState(0).randn(6, 12).astype(np.float32)
  y = np.arange(6) % 10
  want = int(np.sum(np.argmax(_np_batch_dependent(x), 1) != y))
  assert int(classifier_error.count_errors(_jnp_classify, jnp.float32(1), x, y, 10, True)) == want


def test_minibatch_discriminator_on_devices_matches_explicit_batches():
  """The tiny MD discriminator (batch-dependent) through the evaluator on 4 devices vs explicit
  official batches through the same network."""
  d = ConvDiscriminator(channels=(4, 8), input_dropout=0.0, input_noise=0.2,
                        minibatch_kernels=4, minibatch_dim=3)
  rng = np.random.RandomState(1)
  x = rng.randint(0, 256, (21, 32, 32, 3)).astype(np.uint8)
  xf = (x.astype(np.float32) - 127.5) / 127.5
  keys = {k: jax.random.PRNGKey(i) for i, k in enumerate(("params", "noise", "dropout"))}
  variables = d.init(keys, jnp.asarray(xf[:8]), train=True)

  def classify(state, xb, use_ema=True):
    del use_ema
    return d.apply(state, xb, train=False)[0]

  apply = jax.jit(lambda xb: classify(variables, xb))
  predict = lambda xb: np.asarray(apply(xb))
  y = _official_predictions(predict, xf, 8).astype(np.int32)
  y[::3] = (y[::3] + 1) % 10
  want = _official_errors(predict, xf, y, 8)
  assert want == 7
  # Images 13..15 are in batches [8, 16) and [13, 21): their logits depend on the batch.
  assert not np.allclose(apply(xf[8:16])[5:], apply(xf[13:21])[:3], atol=1e-4)
  evaluator = classifier_error.ClassifierError(
      "test_error", classify, x, y, "svhn_official", every_epochs=1, num_epochs=1, batch_size=8)
  evaluator.prepare(sharding.make_mesh(4))
  out = evaluator(variables, 1).scalars
  assert out["test_errors_ema"] == out["test_errors_raw"] == want
  assert out["test_err_ema"] == want / 21


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
  m = classifier_error.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
  np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
  assert m.dtype == np.int64 and m.sum() == 6 and m.trace() == 4


class _LinearVariant:
  """classify: 3 class logits = the first 3 pixels times the state's weight (+1 on class 0 for the
  raw parameters), so EMA and raw, and each member's weight, classify differently."""
  phase_starts, progress_keys, curve_keys, metric_keys = (0,), (), (), ()

  def classify(self, state, x, use_ema=True):
    logits = x.reshape(x.shape[0], -1)[:, :3] * state["w"]
    return logits if use_ema else logits.at[:, 0].add(1.0)


def _numpy_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_test_set_classifier_uses_the_evaluators_prefix_scale_and_members():
  """TestSetClassifier (what the table's ensemble and experiments/confusion.py classify with): the
  config's max_examples prefix, the experiment's pixel scale, EMA vs raw, and member i of a
  vmapped run's SeedStack equal to that member's own state; against NumPy."""
  import ml_collections
  from types import SimpleNamespace

  from itgan_jax.train import seed_vmap
  rng = np.random.RandomState(3)
  test_x = rng.randint(0, 256, (9, 2, 2, 1)).astype(np.uint8)
  exp = SimpleNamespace(dataset=SimpleNamespace(test_x=test_x, test_y=np.arange(9) % 3),
                        scale="unit", variant=_LinearVariant())
  config = ml_collections.ConfigDict({"evals": {"test": {
      "kind": "classifier_error", "batch_size": 4, "max_examples": 7}}})
  weights = np.array([[1.0, -2.0, 0.5], [-1.0, 3.0, 2.0]], np.float32)
  xf = test_x[:7].reshape(7, -1)[:, :3].astype(np.float64) / 255.0

  single = classifier_error.TestSetClassifier(config, exp)
  np.testing.assert_array_equal(single.y, np.arange(7) % 3)
  got = single.log_probabilities({"w": jnp.asarray(weights[0])}, use_ema=True)
  assert got.shape == (7, 3) and got.dtype == np.float64
  np.testing.assert_allclose(got, _numpy_log_softmax(xf * weights[0]), atol=1e-6)
  raw = single.log_probabilities({"w": jnp.asarray(weights[0])}, use_ema=False)
  np.testing.assert_allclose(raw, _numpy_log_softmax(xf * weights[0] + [1.0, 0, 0]), atol=1e-6)

  exp.variant = seed_vmap.SeedVmap([_LinearVariant(), _LinearVariant()], seeds=(4, 5))
  stacked = seed_vmap.SeedStack({"w": jnp.asarray(weights)})
  vmapped = classifier_error.TestSetClassifier(config, exp)
  for member in (0, 1):
    np.testing.assert_allclose(vmapped.log_probabilities(stacked, True, member),
                               _numpy_log_softmax(xf * weights[member]), atol=1e-6)
  config.evals.test.max_examples = None
  assert classifier_error.TestSetClassifier(config, exp).x.shape[0] == 9
