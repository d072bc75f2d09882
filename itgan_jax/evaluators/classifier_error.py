"""Test-set errors of a semi-supervised discriminator (openai/improved-gan, papers.md A.4).

After each epoch the official scripts classify the whole test set with D in deterministic mode
(no noise, no dropout) using the EMA parameters; we report the raw parameters' errors too.
Test batches as the official SVHN scripts: batches of `batch_size` in order, and when the test size
is not a multiple of it, the LAST batch is the last `batch_size` images (overlapping the previous
batch; those images take the last batch's predictions, official `test_pred[first_ind:last_ind]`).
Every batch thus has the full size, which matters for a batch-dependent D (minibatch features).
Reported keys: `test_errors_ema`, `test_err_ema` (fraction), `test_errors_raw`, `test_err_raw`.

Config (`config.evals.<name>`): kind='classifier_error', every_epochs, batch_size (test batches;
1000 for MNIST, 100 (official) where minibatch features make D batch-dependent), max_examples
(None: the whole test set as official; a prefix for smoke runs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.data import preprocess
from itgan_jax.evaluators.common import EvalContext, Scheduled, positive_int
from itgan_jax.train import seed_vmap
from itgan_jax.train import sharding as sharding_lib
from itgan_jax.train.contract import EvalOutput

KEYS = ("test_errors_ema", "test_err_ema", "test_errors_raw", "test_err_raw")


def in_batches(f, x: jax.Array, batch_size: int) -> jax.Array:
  """`f` (batch -> per-example outputs) over full batches of `batch_size`, the last one
  overlapping: batches [0, B), [B, 2B), ... and, if B does not divide N, [N - B, N), whose outputs
  replace those of its first images (official SVHN evaluation; a D with minibatch features always
  sees full batches). N <= B: one batch of the N images."""
  n = x.shape[0]
  if n <= batch_size:
    return f(x)
  nb = n // batch_size
  out = jax.lax.map(f, x[:nb * batch_size].reshape((nb, batch_size) + x.shape[1:]))
  out = out.reshape((nb * batch_size,) + out.shape[2:])
  if nb * batch_size < n:
    out = jnp.concatenate([out[:n - batch_size], f(x[n - batch_size:])])
  return out


def count_errors(classify, state, x, y, batch_size: int, use_ema: bool) -> jax.Array:
  """Misclassified examples of (x, y), classified `in_batches` of `batch_size`."""
  pred = in_batches(lambda xi: jnp.argmax(classify(state, xi, use_ema=use_ema), -1), x,
                    batch_size)
  return jnp.sum(pred != y)


def class_log_probabilities(classify, state, x, batch_size: int, use_ema: bool) -> jax.Array:
  """Log-softmax over the K class logits of `classify(state, x, use_ema)`, `in_batches` of
  `batch_size` (as `count_errors`): log p(y | x, y <= K) of the K+1 discriminator, whose fixed
  zero fake logit cancels in the class softmax. Shape (n, K), float32; logs rather than
  probabilities so that confident members keep their small probabilities (no underflow to 0)."""
  return in_batches(lambda xi: jax.nn.log_softmax(classify(state, xi, use_ema=use_ema), -1), x,
                    batch_size)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
  """Counts (num_classes, num_classes), int64: row = true class, column = predicted class."""
  out = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(out, (np.asarray(y_true), np.asarray(y_pred)), 1)
  return out


def evaluated_test_set(test_x, test_y, scale: str, max_examples: int | None):
  """The evaluated test set: the first `max_examples` (None: all) uint8 images as floats in the
  model's range (`preprocess.to_float` with `scale`) and their labels."""
  n = test_y.shape[0] if max_examples is None else min(max_examples, test_y.shape[0])
  return preprocess.to_float(test_x[:n], scale), test_y[:n]


def settings(config) -> tuple[int, int | None]:
  """(batch_size, max_examples) of `config`'s classifier_error evaluator, as its runs logged."""
  for cfg in (config.get("evals") or {}).values():
    if cfg.get("kind") == "classifier_error":
      return int(cfg.batch_size), cfg.get("max_examples")
  raise ValueError("the config has no classifier_error evaluator (config.evals), so its runs "
                   "have no test errors to tabulate or confuse")


class TestSetClassifier:
  """A trained run's discriminator on the test set, classified as its `classifier_error`
  evaluator does (`settings(config)`: test batches and prefix): `log_probabilities(state, use_ema,
  member)` are `class_log_probabilities`, (n, K) float64. Jitted once: other runs of the same config
  (another subset's checkpoint, another member of a vmapped run) reuse the program.

  Args:
    config: the run's config (its `evals` name the classifier_error evaluator).
    exp: the experiment built from it (`itgan_jax.evaluate.load_run`); its test set and scale are
      used, and a vmapped experiment's members[0] classifies every member.
  """
  __test__ = False  # a library class whose name starts with "Test": not a pytest test class

  def __init__(self, config, exp):
    batch_size, max_examples = settings(config)
    x, y = evaluated_test_set(exp.dataset.test_x, exp.dataset.test_y, exp.scale, max_examples)
    self.x, self.y = jax.device_put(x), np.asarray(y)
    variant = exp.variant
    if isinstance(variant, seed_vmap.SeedVmap):
      variant = variant.members[0]
    self._log_probs = jax.jit(
        lambda state, x, use_ema: class_log_probabilities(variant.classify, state, x, batch_size,
                                                          use_ema), static_argnums=(2,))

  def log_probabilities(self, state, use_ema: bool, member: int | None = None) -> np.ndarray:
    """Returns (n, K) log p(y | x) of the test prefix; `member`: the index in a vmapped run's
    `SeedStack` (None: `state` is one run's state)."""
    if member is not None:
      state = seed_vmap.member_state(state, member)
    return np.asarray(self._log_probs(state, self.x, use_ema), np.float64)


class ClassifierError(Scheduled):
  """Counts test errors with `variant.classify(state, x, use_ema)`, EMA and raw parameters."""
  keys = KEYS

  def __init__(self, name: str, classify, test_x, test_y, scale: str, *, every_epochs: int,
               num_epochs: int, batch_size: int, max_examples: int | None = None):
    self.name, self.every_epochs, self.num_epochs = name, every_epochs, num_epochs
    self._x, self._y = evaluated_test_set(test_x, test_y, scale, max_examples)
    self._classify = classify
    self._batch_size = batch_size
    self._fn = None

  def prepare(self, mesh) -> None:
    repl = sharding_lib.replicated(mesh)
    self._x = sharding_lib.replicated_array(self._x, mesh)
    self._y = sharding_lib.replicated_array(self._y, mesh)

    def evaluate(state, x, y):
      return {"test_errors_ema": count_errors(self._classify, state, x, y, self._batch_size, True),
              "test_errors_raw": count_errors(self._classify, state, x, y, self._batch_size,
                                              False)}
    # The state as the loop placed it (replicated, or sharded by the variant's `state_sharding`).
    self._fn = jax.jit(evaluate, in_shardings=(None, repl, repl), out_shardings=repl)

  def __call__(self, state, epoch: int) -> EvalOutput:
    del epoch
    errors = jax.device_get(self._fn(state, self._x, self._y))
    n = int(self._y.shape[0])
    scalars = {}
    for key, value in errors.items():
      scalars[key] = int(value)
      scalars[key.replace("errors", "err")] = int(value) / n
    return EvalOutput(scalars=scalars)


def build(name: str, cfg, context: EvalContext) -> ClassifierError:
  if context.dataset is None:
    raise ValueError(f"config.evals.{name}: classifier_error needs a labeled test set")
  return ClassifierError(
      name, context.variant.classify, context.dataset.test_x, context.dataset.test_y,
      context.scale, every_epochs=positive_int(f"evals.{name}.every_epochs", cfg.every_epochs),
      num_epochs=context.num_epochs,
      batch_size=positive_int(f"evals.{name}.batch_size", cfg.batch_size),
      max_examples=positive_int(f"evals.{name}.max_examples", cfg.get("max_examples"),
                                allow_none=True))
