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
