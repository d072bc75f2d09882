"""tfds backend (no TensorFlow): structure via tfds.testing.mock_data, order restoration."""

import chex
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from itgan_jax.data import datasets  # noqa: E402


pytestmark = pytest.mark.usefixtures("isolated_data_env")


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_mock_tfds_gives_same_structure(name, shape, tmp_path, no_network):
  with tfds.testing.mock_data(num_examples=16):
    with pytest.warns(UserWarning, match="does not match the original"):
      ds = datasets.load_dataset(name, source="tfds", tfds_data_dir=str(tmp_path))
  assert isinstance(ds, datasets.ArrayDataset)
  chex.assert_shape([ds.train_x, ds.test_x, ds.train_y, ds.test_y],
                    [(16,) + shape, (16,) + shape, (16,), (16,)])
  assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int32
  assert ds.name == name and ds.num_classes == 10
  assert ds.source == "tfds" and not ds.verified


class _FakeSource:
  """Stands in for an ArrayRecord data source: records in stored order, plus dataset_info."""

  def __init__(self, records, info):
    self.records, self.dataset_info = records, info

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    return self.records[i]


def _serve(records_by_split):
  def as_data_source(builder, split=None, **kwargs):
    return _FakeSource(records_by_split[split], builder.info)
  return as_data_source


def _tfds_writer_order(split, n, tmp_path):
  """Record order produced by tfds's own writer shuffler for keys 0..n-1."""
  from tensorflow_datasets.core import shuffle
  shuffler = shuffle.Shuffler(tmp_path, split)
  for k in range(n):
    shuffler.add(k, str(k).encode())
  return np.array([int(data) for _, data in shuffler])


def test_shuffle_order_matches_tfds_writer(tmp_path):
  for split in ("train", "test"):
    np.testing.assert_array_equal(datasets.tfds_shuffle_order(split, 5000),
                                  _tfds_writer_order(split, 5000, tmp_path))


def test_hash_shuffled_mnist_copy_is_restored_and_verified(shared_data_dir, tmp_path):
  real = datasets.load_dataset("mnist", source="files", data_dir=str(shared_data_dir))
  records = {}
  for split, x, y in (("train", real.train_x, real.train_y), ("test", real.test_x, real.test_y)):
    order = _tfds_writer_order(split, len(y), tmp_path)
    records[split] = [{"image": x[k], "label": np.int64(y[k])} for k in order]
  with tfds.testing.mock_data(as_data_source_fn=_serve(records)):
    ds = datasets.load_dataset("mnist", source="tfds", tfds_data_dir=str(tmp_path))
  assert ds.verified and ds.source == "tfds"
  for a, b in ((ds.train_x, real.train_x), (ds.train_y, real.train_y), (ds.test_x, real.test_x),
               (ds.test_y, real.test_y)):
    np.testing.assert_array_equal(a, b)


def test_cifar_ids_restore_order(tmp_path):
  n = {"train": 30, "test": 12}
  records = {}
  for split, size in n.items():
    stored = np.random.RandomState(size).permutation(size)
    records[split] = [{"id": f"{split}_{k:05d}", "image": np.full((32, 32, 3), k, np.uint8),
                       "label": np.int64(k % 10)} for k in stored]
  with tfds.testing.mock_data(as_data_source_fn=_serve(records)):
    with pytest.warns(UserWarning, match="does not match"):  # not the real CIFAR content
      ds = datasets.load_dataset("cifar10", source="tfds", tfds_data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.train_x[:, 3, 4, 1], np.arange(30))
  np.testing.assert_array_equal(ds.test_y, np.arange(12) % 10)


def _fake_prepared(root, name, files):
  d = root / name / "3.0.1"
  d.mkdir(parents=True)
  (d / "dataset_info.json").write_text("{}")
  for f in files:
    (d / f).write_bytes(b"")
  return root


def test_tfds_prepared_check(tmp_path):
  assert not datasets.tfds_prepared("mnist", None)
  assert not datasets.tfds_prepared("mnist", str(tmp_path / "empty"))
  ok = _fake_prepared(tmp_path / "a", "mnist", ["mnist-train.array_record-00000-of-00001",
                                                "mnist-test.array_record-00000-of-00001"])
  assert datasets.tfds_prepared("mnist", str(ok))
  assert not datasets.tfds_prepared("cifar10", str(ok))
  tfrecord = _fake_prepared(tmp_path / "b", "mnist", ["mnist-train.tfrecord-00000-of-00001",
                                                      "mnist-test.tfrecord-00000-of-00001"])
  assert not datasets.tfds_prepared("mnist", str(tfrecord))


def test_auto_dispatch(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(datasets, "load_tfds", lambda name, d: calls.append(("tfds", name)))
  monkeypatch.setattr(datasets, "load_files", lambda name, d, dl: calls.append(("files", name)))
  prepared = _fake_prepared(tmp_path, "mnist", ["mnist-train.array_record-00000-of-00001",
                                                "mnist-test.array_record-00000-of-00001"])
  datasets.load_dataset("mnist", source="auto", tfds_data_dir=str(prepared))
  datasets.load_dataset("mnist", source="auto", tfds_data_dir=str(tmp_path / "none"))
  datasets.load_dataset("mnist", source="auto")
  datasets.load_dataset("mnist", source="files", tfds_data_dir=str(prepared))
  assert calls == [("tfds", "mnist"), ("files", "mnist"), ("files", "mnist"), ("files", "mnist")]


def test_unprepared_tfds_dir_fails_fast(tmp_path, no_network):
  with pytest.raises(datasets.DatasetNotFoundError) as e:
    datasets.load_dataset("mnist", source="tfds", tfds_data_dir=str(tmp_path / "empty"))
  msg = str(e.value)
  assert "no usable tfds ArrayRecord copy of mnist" in msg and "dataset_info.json" in msg
  assert str(tmp_path / "empty") in msg
  assert "tfds_prep" in msg and "--config.data.source=files" in msg
