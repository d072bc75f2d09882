"""Official semi-supervised protocol: labeled-subset selection and per-epoch index plans."""

import chex
import numpy as np
import pytest

from itgan_jax.data import datasets, ssl


@pytest.fixture(scope="module")
def mnist_labels(request):
  shared = request.getfixturevalue("shared_data_dir")
  return datasets.load_dataset("mnist", source="files", data_dir=str(shared)).train_y


def _official_txs(trainx, trainy, seed_data, count):
  """openai/improved-gan train_mnist_feature_matching.py, transcribed."""
  rng_data = np.random.RandomState(seed_data)
  inds = rng_data.permutation(trainx.shape[0])
  trainx = trainx[inds]
  trainy = trainy[inds]
  txs, tys = [], []
  for j in range(10):
    txs.append(trainx[trainy == j][:count])
    tys.append(trainy[trainy == j][:count])
  return np.concatenate(txs, axis=0), np.concatenate(tys, axis=0)


@pytest.mark.parametrize("seed_data", [1, 2, 12345])
def test_select_labeled_equals_official(mnist_labels, seed_data):
  # trainx = the example indices, so txs are the chosen indices themselves.
  txs, tys = _official_txs(np.arange(mnist_labels.shape[0]), mnist_labels, seed_data, 10)
  idx = ssl.select_labeled(mnist_labels, 10, seed_data, 10)
  chex.assert_shape(idx, (100,))
  np.testing.assert_array_equal(idx, txs)
  np.testing.assert_array_equal(mnist_labels[idx], tys)
  np.testing.assert_array_equal(mnist_labels[idx], np.repeat(np.arange(10), 10))
  assert np.unique(idx).size == 100


def test_select_labeled_differs_by_seed(mnist_labels):
  a = ssl.select_labeled(mnist_labels, 10, 1, 10)
  b = ssl.select_labeled(mnist_labels, 10, 2, 10)
  assert not np.array_equal(a, b)


def test_select_labeled_too_few_examples():
  y = np.array([0, 0, 0, 1, 1, 2])
  np.testing.assert_array_equal(np.sort(ssl.select_labeled(y, 1, 0, 3)[2:]), [5])
  with pytest.raises(ValueError, match="class 2 has only 1 training examples, fewer than the 2"):
    ssl.select_labeled(y, 2, 0, 3)
  with pytest.raises(ValueError, match="positive"):
    ssl.select_labeled(y, 0, 0, 3)


def _check_plan(plan, num_train, labeled, batch_size):
  steps = num_train // batch_size
  n = steps * batch_size
  for k in ("lab", "unl", "unl2"):
    chex.assert_shape(plan[k], (steps, batch_size))
    assert plan[k].dtype == np.int32
  for k in ("unl", "unl2"):
    flat = plan[k].reshape(-1)
    assert np.unique(flat).size == n and flat.min() >= 0 and flat.max() < num_train
  lab = plan["lab"].reshape(-1)
  assert np.isin(lab, labeled).all()
  n_lab = labeled.shape[0]
  for start in range(0, n, n_lab):  # each tile: a permutation of (a prefix of) the labeled set
    tile = lab[start:start + n_lab]
    assert np.unique(tile).size == tile.size
    if tile.size == n_lab:
      np.testing.assert_array_equal(np.sort(tile), np.sort(labeled))


def test_ssl_plan_official_sizes(mnist_labels):
  labeled = ssl.select_labeled(mnist_labels, 10, 1, 10)
  plan = ssl.ssl_epoch_plan(60000, labeled, 100, seed=1, epoch=0)
  _check_plan(plan, 60000, labeled, 100)
  for k in ("unl", "unl2"):  # 60000 = 600 * 100: every epoch's unl is a permutation of range(N)
    np.testing.assert_array_equal(np.sort(plan[k].reshape(-1)), np.arange(60000))
  assert not np.array_equal(plan["unl"], plan["unl2"])
  # Each labeled example is used exactly 600 times per epoch (600 tiles).
  np.testing.assert_array_equal(np.bincount(plan["lab"].reshape(-1), minlength=60000)[labeled],
                                np.full(100, 600))


def test_ssl_plan_deterministic_per_seed_and_epoch():
  labeled = np.arange(0, 1000, 10)
  a = ssl.ssl_epoch_plan(1000, labeled, 50, seed=3, epoch=7)
  b = ssl.ssl_epoch_plan(1000, labeled, 50, seed=3, epoch=7)  # regenerated without epochs 0..6
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  for other in (ssl.ssl_epoch_plan(1000, labeled, 50, seed=3, epoch=8),
                ssl.ssl_epoch_plan(1000, labeled, 50, seed=4, epoch=7)):
    for k in a:
      assert not np.array_equal(a[k], other[k]), k


@pytest.mark.parametrize("num_train,n_lab,batch_size", [
    (1000, 300, 64),  # ceil tiling, last tile partial (n = 960 = 3 * 300 + 60)
    (60, 50, 16),     # more labeled examples than used indices (n = 48)
    (97, 7, 10),      # num_train not a multiple of batch_size
])
def test_ssl_plan_edge_cases(num_train, n_lab, batch_size):
  labeled = np.random.RandomState(0).choice(num_train, n_lab, replace=False)
  plan = ssl.ssl_epoch_plan(num_train, labeled, batch_size, seed=0, epoch=1)
  _check_plan(plan, num_train, labeled, batch_size)


def test_ssl_plan_errors():
  with pytest.raises(ValueError, match="batch_size=200 must be in"):
    ssl.ssl_epoch_plan(100, np.arange(10), 200, 0, 0)
  with pytest.raises(ValueError, match="outside"):
    ssl.ssl_epoch_plan(100, np.array([5, 100]), 10, 0, 0)
  with pytest.raises(ValueError, match="non-empty"):
    ssl.ssl_epoch_plan(100, np.array([], np.int64), 10, 0, 0)


def test_gan_plan():
  plan = ssl.gan_epoch_plan(1003, 100, seed=5, epoch=2)
  chex.assert_shape(plan["idx"], (10, 100))
  assert plan["idx"].dtype == np.int32
  assert np.unique(plan["idx"]).size == 1000 and plan["idx"].max() < 1003
  np.testing.assert_array_equal(plan["idx"], ssl.gan_epoch_plan(1003, 100, 5, 2)["idx"])
  assert not np.array_equal(plan["idx"], ssl.gan_epoch_plan(1003, 100, 5, 3)["idx"])
