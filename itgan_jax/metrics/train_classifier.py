r"""Trains the MNIST / CIFAR-10 classifier behind the "MNIST score" and classifier FD.

  python -m itgan_jax.metrics.train_classifier --dataset=mnist \
      --out=itgan_jax/metrics/weights/mnist_classifier.npz
  python -m itgan_jax.metrics.train_classifier --dataset=cifar10 \
      --out=itgan_jax/metrics/weights/cifar10_classifier.npz
  python -m itgan_jax.metrics.train_classifier --dataset=mnist --evaluate_only   # test accuracy
                                                          # of the checked-in (or --out) weights

Deterministic: parameters from `PRNGKey(seed)`, the epoch's example order from
`np.random.RandomState(seed + epoch)`, augmentation (CIFAR-10 only: random 32x32 crop of the
4-pixel zero-padded image and horizontal flip, as the usual CIFAR recipe) from `fold_in(key, step)`.
Adam (optax defaults, b1 0.9, b2 0.999, eps 1e-8), learning rate `lr` with a cosine decay to 0 over
all steps, softmax cross-entropy, no weight decay. Trains on the whole real training set (read
from `--data_dir`, default $ITGAN_DATA_DIR / the download cache, sha256-checked), never on the test
set; prints the test accuracy and the weight file's sha256, and registers the digest in
`itgan_jax/metrics/weights/SHA256SUMS` when the file is written into that directory.
The same command on the same JAX/XLA version and CPU gives the same bytes; other hardware may
differ in the last float bits (the table then tells you the file changed).
"""

from __future__ import annotations

import functools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from itgan_jax.metrics import classifier

DEFAULTS = {  # dataset -> (epochs, batch size, learning rate, augment)
    "mnist": dict(epochs=6, batch_size=128, lr=2e-3, augment=False),
    "cifar10": dict(epochs=24, batch_size=128, lr=2e-3, augment=True),
}
# CIFAR-10 epochs: 390 steps of 128 take about 0.39 s each on ONE CPU core (measured with
# `taskset -c 1 ... --dataset=cifar10 --max_steps=300`: 300 steps in 125 s incl. compilation),
# i.e. about 152 s per epoch, so 24 epochs train in about 61 minutes on one core. The checked-in
# weights: 24 epochs in 3408 s (142 s per epoch) on one core, test accuracy 0.8216 (RESULTS.md).


def _augment(x: jax.Array, key: jax.Array) -> jax.Array:
  """Random crop of the 4-pixel zero-padded image + horizontal flip, per example (uint8 NHWC)."""
  n, h, w, _ = x.shape
  k_off, k_flip = jax.random.split(key)
  padded = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  offs = jax.random.randint(k_off, (n, 2), 0, 9)
  crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, x.shape[3])))
  x = crop(padded, offs)
  flip = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1], x)


def train(dataset: str, train_x: np.ndarray, train_y: np.ndarray, *, epochs: int, batch_size: int,
          lr: float, augment: bool, seed: int = 0, max_steps: int | None = None,
          log_every: int = 100, verbose: bool = True):
  """Returns the trained `params` of `classifier.SPECS[dataset]['module']`."""
  module = classifier.SPECS[dataset]["module"]
  steps_per_epoch = train_x.shape[0] // batch_size
  total = epochs * steps_per_epoch if max_steps is None else min(max_steps,
                                                                  epochs * steps_per_epoch)
  params = classifier.init_params(dataset, seed)
  tx = optax.adam(optax.cosine_decay_schedule(lr, max(total, 1)))
  opt_state = tx.init(params)
  key = jax.random.PRNGKey(seed + 1)
  x_dev, y_dev = jax.device_put(train_x), jax.device_put(train_y.astype(np.int32))

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, idx, t):
    x, y = x_dev[idx], y_dev[idx]
    if augment:
      x = _augment(x, jax.random.fold_in(key, t))

    def loss_fn(p):
      logits = module.apply({"params": p}, x)["logits"]
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, jnp.mean(jnp.argmax(logits, -1) == y)

    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, acc

  t = 0
  start = time.time()
  for epoch in range(epochs):
    order = np.random.RandomState(seed + epoch).permutation(train_x.shape[0])
    for i in range(steps_per_epoch):
      if t >= total:
        break
      idx = jnp.asarray(order[i * batch_size:(i + 1) * batch_size])
      params, opt_state, loss, acc = step(params, opt_state, idx, t)
      t += 1
      if verbose and (t % log_every == 0 or t == total):
        print(f"epoch {epoch + 1}/{epochs} step {t}/{total} loss {float(loss):.4f} "
              f"batch acc {float(acc):.4f} ({time.time() - start:.0f} s)", flush=True)
  return jax.device_get(params)


def accuracy(dataset: str, params, x: np.ndarray, y: np.ndarray) -> float:
  extractor = classifier.ClassifierFeatureExtractor(dataset, params, batch_size=1000)
  logits = extractor(x, outputs=("logits",))["logits"]
  return float(np.mean(np.argmax(logits, -1) == y))


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined only when run as a program (importing the module defines no absl flags)."""
  flags.DEFINE_enum("dataset", "mnist", sorted(classifier.SPECS), "which classifier to train")
  flags.DEFINE_string("out", None, "weight file to write (default: the checked-in location)")
  flags.DEFINE_string("data_dir", None, "directory with the original dataset files "
                      "(default: $ITGAN_DATA_DIR, then the download cache)")
  flags.DEFINE_integer("seed", 0, "parameter init, data order and augmentation seed")
  flags.DEFINE_integer("epochs", None, "default: 6 (mnist), 24 (cifar10)")
  flags.DEFINE_integer("batch_size", None, "default 128")
  flags.DEFINE_float("lr", None, "peak Adam learning rate (cosine decay to 0); default 2e-3")
  flags.DEFINE_integer("max_steps", None, "stop after this many steps (smoke tests)")
  flags.DEFINE_bool("evaluate_only", False, "do not train: load the weights of --out (default: "
                    "the checked-in file, sha256-checked) and print their test accuracy")
  flags.DEFINE_bool("register", None, "write the sha256 into weights/SHA256SUMS (default: when "
                    "--out is in itgan_jax/metrics/weights)")


def main(argv):
  del argv
  from itgan_jax.data import datasets  # pylint: disable=import-outside-toplevel
  cfg = dict(DEFAULTS[FLAGS.dataset])
  for name in ("epochs", "batch_size", "lr"):
    if getattr(FLAGS, name) is not None:
      cfg[name] = getattr(FLAGS, name)
  ds = datasets.load_dataset(FLAGS.dataset, source="files", data_dir=FLAGS.data_dir)
  print(f"{FLAGS.dataset}: {ds.train_x.shape[0]} training images {ds.train_x.shape[1:]}, "
        f"{ds.test_x.shape[0]} test images; {cfg}, seed {FLAGS.seed}; jax {jax.__version__} "
        f"on {jax.default_backend()}", flush=True)
  out = pathlib.Path(FLAGS.out) if FLAGS.out else classifier.default_weights_path(FLAGS.dataset)
  if FLAGS.evaluate_only:
    params, metadata = classifier.load_weights(FLAGS.dataset, out)
    test_acc = accuracy(FLAGS.dataset, params, ds.test_x, ds.test_y)
    print(f"{out}: test accuracy {test_acc:.4f} "
          f"({int(round((1 - test_acc) * ds.test_x.shape[0]))} errors of {ds.test_x.shape[0]}); "
          f"recorded at training: {metadata.get('test_accuracy')}")
    return
  start = time.time()
  params = train(FLAGS.dataset, ds.train_x, ds.train_y, seed=FLAGS.seed, max_steps=FLAGS.max_steps,
                 **cfg)
  train_time = time.time() - start
  test_acc = accuracy(FLAGS.dataset, params, ds.test_x, ds.test_y)
  metadata = dict(dataset=FLAGS.dataset, seed=FLAGS.seed, test_accuracy=test_acc,
                  num_params=int(sum(np.size(v) for v in jax.tree.leaves(params))),
                  train_seconds=round(train_time, 1), jax_version=jax.__version__,
                  max_steps=FLAGS.max_steps, **cfg)
  digest = classifier.save_weights(params, metadata, out)
  register = FLAGS.register
  if register is None:
    register = out.resolve().parent == classifier.WEIGHTS_DIR
  if register:
    classifier.write_sha256_entry(out.name, digest)
  print(f"test accuracy {test_acc:.4f} ({int(round((1 - test_acc) * ds.test_x.shape[0]))} errors "
        f"of {ds.test_x.shape[0]}); {metadata['num_params']} parameters; trained in "
        f"{train_time:.0f} s")
  print(f"wrote {out} ({out.stat().st_size} bytes)")
  print(f"sha256 {digest}" + (f"  (registered in {classifier.SHA256_TABLE})" if register else ""))


if __name__ == "__main__":
  define_flags()
  app.run(main)
