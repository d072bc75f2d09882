"""Streaming image data: the image-folder / tfds sources (data/image_folder.py) and the streaming
feeder (train/streaming.py): decoding, crop/resize, labels, per-process rows, prefetch, errors."""

from __future__ import annotations

import io
import json
import pathlib
import threading
import types

import jax
import numpy as np
import pytest
from PIL import Image

from itgan_jax.data import image_folder
from itgan_jax.data.base import DatasetCorruptError, DatasetNotFoundError
from itgan_jax.train import loop, sharding, streaming


def make_folder(root: pathlib.Path, counts=(3, 2, 4), seed=0) -> pathlib.Path:
  """Classes 'b_cat', 'a_dog', 'c_emu' (sorted: a_dog, b_cat, c_emu) of random images of
  different sizes: RGB PNGs, JPEGs, a grayscale PNG and an RGBA PNG."""
  rng = np.random.RandomState(seed)
  for name, count in zip(("b_cat", "a_dog", "c_emu"), counts):
    (root / name).mkdir(parents=True)
    for i in range(count):
      h, w = rng.randint(20, 60, 2)
      if i == 1 and name == "c_emu":
        Image.fromarray(rng.randint(0, 256, (h, w), np.uint8), "L").save(root / name / f"{i}.png")
      elif i == 2 and name == "c_emu":
        Image.fromarray(rng.randint(0, 256, (h, w, 4), np.uint8), "RGBA").save(
            root / name / f"{i}.PNG")
      else:
        ext = "jpg" if i % 2 else "png"
        Image.fromarray(rng.randint(0, 256, (h, w, 3), np.uint8)).save(root / name / f"{i}.{ext}")
  (root / "a_dog" / "notes.txt").write_text("not an image")
  return root


@pytest.fixture
def folder(tmp_path):
  return make_folder(tmp_path / "data")


def test_scan_sorts_classes_and_files_and_labels_them(folder):
  classes, files, labels = image_folder.scan_image_folder(folder)
  assert classes == ["a_dog", "b_cat", "c_emu"]
  assert [f.relative_to(folder).as_posix() for f in files] == [
      "a_dog/0.png", "a_dog/1.jpg", "b_cat/0.png", "b_cat/1.jpg", "b_cat/2.png",
      "c_emu/0.png", "c_emu/1.png", "c_emu/2.PNG", "c_emu/3.jpg"]
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1, 2, 2, 2, 2])
  assert labels.dtype == np.int32


def test_crop_box_is_the_official_centred_square():
  # (h - side) / 2 rounded half away from zero, as Python 2's round in the official center_crop.
  assert image_folder.crop_box(30, 31) == (1, 0, 31, 30)
  assert image_folder.crop_box(33, 30) == (0, 2, 30, 32)
  assert image_folder.crop_box(20, 20) == (0, 0, 20, 20)


def test_decode_crops_the_centre_and_resizes(tmp_path):
  rng = np.random.RandomState(1)
  wide = rng.randint(0, 256, (30, 41, 3), np.uint8)  # crop offset (41 - 30) / 2 = 5.5 -> 6
  Image.fromarray(wide).save(tmp_path / "wide.png")
  np.testing.assert_array_equal(image_folder.decode_file(tmp_path / "wide.png", 30),
                                wide[:, 6:36])
  tall = rng.randint(0, 256, (45, 20, 3), np.uint8)  # offset 12.5 -> 13
  Image.fromarray(tall).save(tmp_path / "tall.png")
  got = image_folder.decode_file(tmp_path / "tall.png", 8)
  assert got.shape == (8, 8, 3) and got.dtype == np.uint8
  want = np.asarray(Image.fromarray(tall[13:33]).resize((8, 8), Image.BILINEAR))
  np.testing.assert_array_equal(got, want)
  # A constant image stays constant through crop and resize.
  Image.fromarray(np.full((50, 70, 3), 77, np.uint8)).save(tmp_path / "flat.png")
  assert np.all(image_folder.decode_file(tmp_path / "flat.png", 16) == 77)


def test_gray_and_alpha_images_become_rgb(folder):
  gray = np.asarray(Image.open(folder / "c_emu" / "1.png"))
  got = image_folder.decode_file(folder / "c_emu" / "1.png", min(gray.shape))
  np.testing.assert_array_equal(got[..., 0], got[..., 1])
  np.testing.assert_array_equal(got[..., 0], got[..., 2])
  rgba = np.asarray(Image.open(folder / "c_emu" / "2.PNG"))
  box = image_folder.crop_box(*rgba.shape[:2])
  side = box[2] - box[0]
  got = image_folder.decode_file(folder / "c_emu" / "2.PNG", side)
  np.testing.assert_array_equal(got, rgba[box[1]:box[3], box[0]:box[2], :3])


def test_read_decodes_rows_in_order_with_or_without_threads(folder):
  ds = image_folder.load_image_folder(folder, 16)
  assert (ds.num_train, ds.num_classes, ds.image_shape) == (9, 3, (16, 16, 3))
  idx = np.array([8, 0, 3, 0])
  want = np.stack([image_folder.decode_file(ds.describe(i).split(" ", 1)[1], 16) for i in idx])
  np.testing.assert_array_equal(ds.read(idx), want)
  pool = streaming.concurrent.futures.ThreadPoolExecutor(3)
  np.testing.assert_array_equal(ds.read(idx, pool), want)
  pool.shutdown()
  with pytest.raises(IndexError):
    ds.read([9])


def test_clear_errors_for_missing_empty_and_corrupt_data(tmp_path, folder):
  with pytest.raises(DatasetNotFoundError, match="does not exist"):
    image_folder.load_image_folder(tmp_path / "nowhere", 16)
  (tmp_path / "empty").mkdir()
  with pytest.raises(DatasetNotFoundError, match="no class sub-directories"):
    image_folder.load_image_folder(tmp_path / "empty", 16)
  (folder / "d_void").mkdir()
  (folder / "d_void" / "readme.txt").write_text("x")
  with pytest.raises(DatasetNotFoundError, match="d_void holds no image files"):
    image_folder.load_image_folder(folder, 16)
  (folder / "d_void" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  ds = image_folder.load_image_folder(folder, 16)
  with pytest.raises(DatasetCorruptError, match=r"cannot decode image .*d_void/broken\.jpg"):
    ds.read([ds.num_train - 1])
  with pytest.raises(ValueError, match="image_size=0"):
    image_folder.load_image_folder(folder, 0)
  cfg = types.SimpleNamespace(name="image_folder", get=lambda k, default=None: default)
  with pytest.raises(ValueError, match="needs --config.data.dir"):
    image_folder.load(cfg)


class _FakeTfds:
  """What `load_tfds_imagenet` uses of tensorflow_datasets: data_source, decode.SkipDecoding."""

  def __init__(self, records, num_classes, fail=False):
    self.records, self.num_classes, self.fail = records, num_classes, fail
    self.decode = types.SimpleNamespace(SkipDecoding=lambda: "skip")
    self.calls = []

  def data_source(self, name, *, split, data_dir, download, decoders):
    self.calls.append((name, split, data_dir, download, decoders))
    if self.fail:
      raise FileNotFoundError("imagenet2012 not found")
    label = types.SimpleNamespace(num_classes=self.num_classes, names=["n01", "n02", "n03"])
    src = list(self.records)

    class Source:
      dataset_info = types.SimpleNamespace(features={"label": label})

      def __len__(self):
        return len(src)

      def __getitem__(self, i):
        return src[i]
    return Source()


def _png_bytes(array):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  return buf.getvalue()


def test_tfds_source_reads_encoded_images_and_caches_labels(tmp_path):
  rng = np.random.RandomState(3)
  images = [rng.randint(0, 256, (20 + i, 24, 3), np.uint8) for i in range(4)]
  records = [{"image": _png_bytes(a), "label": i % 3} for i, a in enumerate(images)]
  fake = _FakeTfds(records, 3)
  ds = image_folder.load_tfds_imagenet(tmp_path / "tfds", 16, tfds_module=fake,
                                       label_cache_dir=tmp_path / "cache")
  assert fake.calls[0][:4] == ("imagenet2012", "train", str(tmp_path / "tfds"), False)
  assert fake.calls[0][4] == {"image": "skip"}
  np.testing.assert_array_equal(ds.train_y, [0, 1, 2, 0])
  assert ds.class_names == ("n01", "n02", "n03") and ds.num_classes == 3
  for i in (0, 3):
    want = image_folder.center_crop_resize(Image.fromarray(images[i]), 16)
    np.testing.assert_array_equal(ds.read([i])[0], want)
  assert (tmp_path / "cache" / "imagenet2012_train_labels_4.npy").is_file()
  records[1]["label"] = 2  # the cached labels are used: no second pass over the records
  again = image_folder.load_tfds_imagenet(None, 16, tfds_module=fake,
                                          label_cache_dir=tmp_path / "cache")
  np.testing.assert_array_equal(again.train_y, [0, 1, 2, 0])
  records[2]["image"] = b"garbage"
  with pytest.raises(DatasetCorruptError, match=r"imagenet2012/train\[2\]"):
    again.read([2])
  with pytest.raises(DatasetNotFoundError, match="no usable tfds ArrayRecord copy"):
    image_folder.load_tfds_imagenet(None, 16, tfds_module=_FakeTfds([], 3, fail=True))


# --- the streaming feeder ---------------------------------------------------------------------

class _Spy:
  """A source that records which indices it decodes (and can fail on one)."""

  def __init__(self, ds, fail_on=None):
    self.ds, self.seen, self.fail_on = ds, [], fail_on
    self.lock = threading.Lock()

  def read(self, idx, pool=None):
    idx = np.asarray(idx)
    with self.lock:
      self.seen.append(idx.copy())
    if self.fail_on is not None and self.fail_on in idx:
      raise DatasetCorruptError(f"cannot decode image {self.ds.describe(self.fail_on)}")
    return self.ds.read(idx, pool)


def _feeder(ds, source=None, **kw):
  return streaming.StreamingFeeder({"x": source or ds}, {"y": ds.train_y},
                                   {"x": ("x", "idx"), "y": ("y", "idx")}, "tanh", **kw)


def _plan(seed, steps=2, batch=8, n=9):
  rng = np.random.default_rng(seed)
  return {"idx": rng.integers(0, n, (steps, batch)).astype(np.int32)}


def test_feeder_gives_global_batches_equal_to_direct_decoding(folder):
  ds = image_folder.load_image_folder(folder, 8)
  mesh = sharding.make_mesh(8)
  feeder = _feeder(ds, num_workers=2)
  plan = _plan(0)
  inputs = feeder.chunk_inputs(plan, mesh)
  assert inputs["x"].shape == (2, 8, 8, 8, 3) and inputs["x"].dtype == np.uint8
  assert inputs["x"].sharding.is_equivalent_to(sharding.batch_sharded(mesh, 1), 5)
  np.testing.assert_array_equal(np.asarray(inputs["x"]),
                                ds.read(plan["idx"].reshape(-1)).reshape(2, 8, 8, 8, 3))
  np.testing.assert_array_equal(np.asarray(inputs["y"]), ds.train_y[plan["idx"]])
  batch = feeder.batch({}, {k: v[0] for k, v in inputs.items()})
  np.testing.assert_allclose(batch["x"], np.asarray(inputs["x"][0], np.float64) / 127.5 - 1,
                             atol=1e-6)
  assert batch["y"].dtype == np.int32
  feeder.close()


def test_each_process_decodes_only_its_own_rows(folder, monkeypatch):
  """With the batch rows 2:5 assigned to this process, only their images are decoded."""
  ds = image_folder.load_image_folder(folder, 8)
  spy = _Spy(ds)
  feeder = _feeder(ds, spy)
  calls = []

  def rows_of_this_process(global_batch, mesh):
    calls.append((global_batch, mesh))
    return slice(2, 5)
  monkeypatch.setattr(streaming.sharding_lib, "process_batch_slice", rows_of_this_process)
  plan = _plan(1)
  local = feeder.local_rows(plan, "mesh")
  assert calls == [(8, "mesh")]
  np.testing.assert_array_equal(local["idx"], plan["idx"][:, 2:5])
  values = feeder.gather(local)
  np.testing.assert_array_equal(np.concatenate(spy.seen), plan["idx"][:, 2:5].reshape(-1))
  assert values["x"].shape == (2, 3, 8, 8, 3)
  np.testing.assert_array_equal(values["y"], ds.train_y[plan["idx"][:, 2:5]])
  feeder.close()


def test_prefetch_gives_the_same_chunks_as_no_prefetch(folder):
  ds = image_folder.load_image_folder(folder, 8)
  mesh = sharding.make_mesh(2)
  plans = [_plan(s) for s in range(4)]
  plain = _feeder(ds, prefetch=False)
  want = [jax.device_get(plain.chunk_inputs(p, mesh)) for p in plans]
  spy = _Spy(ds)
  ahead = _feeder(ds, spy)
  got = [jax.device_get(ahead.chunk_inputs(plans[0], mesh))]
  for i in range(1, 4):
    ahead.prefetch(plans[i], mesh)
    got.append(jax.device_get(ahead.chunk_inputs(plans[i], mesh)))
  for g, w in zip(got, want):
    for k in w:
      np.testing.assert_array_equal(g[k], w[k])
  assert ahead.stats == {"prefetched": 3, "decoded_now": 1}
  assert len(spy.seen) == 4  # every chunk decoded exactly once
  # A prefetch of other rows is not used: the asked rows are decoded now.
  ahead.prefetch(plans[0], mesh)
  other = jax.device_get(ahead.chunk_inputs(plans[1], mesh))
  np.testing.assert_array_equal(other["x"], want[1]["x"])
  assert ahead.stats == {"prefetched": 3, "decoded_now": 2}
  assert plain.stats["prefetched"] == 0
  plain.close()
  ahead.close()


def test_a_decode_error_in_the_prefetch_thread_names_the_file(folder):
  ds = image_folder.load_image_folder(folder, 8)
  plan = {"idx": np.full((1, 2), 4, np.int32)}
  feeder = _feeder(ds, _Spy(ds, fail_on=4))
  mesh = sharding.make_mesh(1)
  feeder.prefetch(plan, mesh)
  with pytest.raises(DatasetCorruptError, match=r"b_cat/2\.png"):
    feeder.chunk_inputs(plan, mesh)
  feeder.close()


def test_feeder_rejects_unknown_arrays_and_workers(folder):
  ds = image_folder.load_image_folder(folder, 8)
  with pytest.raises(ValueError, match="reads 'z'"):
    streaming.StreamingFeeder({"x": ds}, {}, {"x": ("z", "idx")}, "tanh")
  with pytest.raises(ValueError, match="num_workers=0"):
    _feeder(ds, num_workers=0)


def test_loop_prefetches_the_next_chunk_across_epochs():
  """`loop._prefetch_next` hands the feeder the rows of the chunk the loop runs next."""
  seen = []
  plans = {e: {"idx": np.arange(5 * 2).reshape(5, 2) + 100 * e} for e in range(3)}
  exp = types.SimpleNamespace(
      steps_per_epoch=5, epoch_plan=lambda e: plans[e],
      feeder=types.SimpleNamespace(prefetch=lambda rows, mesh: seen.append(rows["idx"])))
  config = types.SimpleNamespace(train=types.SimpleNamespace(steps_per_call=2))
  loop._prefetch_next(exp, config, None, plans[0], 0, 2, 15, ())
  loop._prefetch_next(exp, config, None, plans[0], 0, 4, 15, ())  # last, shorter chunk
  loop._prefetch_next(exp, config, None, plans[0], 0, 5, 15, ())  # next epoch's first chunk
  loop._prefetch_next(exp, config, None, plans[1], 1, 6, 15, (7,))  # stops at a phase start
  loop._prefetch_next(exp, config, None, plans[2], 2, 15, 15, ())  # nothing after the end
  np.testing.assert_array_equal(seen[0], plans[0]["idx"][2:4])
  np.testing.assert_array_equal(seen[1], plans[0]["idx"][4:5])
  np.testing.assert_array_equal(seen[2], plans[1]["idx"][0:2])
  np.testing.assert_array_equal(seen[3], plans[1]["idx"][1:2])
  assert len(seen) == 4


def test_two_processes_each_decode_only_their_devices_rows(folder):
  """A real two-process CPU job (2 devices each): process i decodes only batch rows 4i..4i+3 of
  every step, and the assembled global batch equals a direct decode of the whole plan."""
  from tests import multiprocess, streaming_worker  # pylint: disable=import-outside-toplevel
  port = multiprocess.free_port()
  script = pathlib.Path(streaming_worker.__file__)
  argv = [multiprocess.python_argv(script, f"127.0.0.1:{port}", "2", str(i), str(folder))
          for i in range(2)]
  run = multiprocess.run_processes(argv, multiprocess.worker_env(num_cpu_devices=2), timeout=120)
  results = []
  for r in run.results:
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, run.report()
    results.append(json.loads(lines[0][len("RESULT "):]))
  plan = np.asarray(results[0]["plan"])
  half = streaming_worker.BATCH // 2
  for i, res in enumerate(results):
    assert res["shape"] == [streaming_worker.STEPS, streaming_worker.BATCH, 8, 8, 3]
    assert res["shards_ok"] and res["labels_ok"] and res["prefetched"] == 1
    np.testing.assert_array_equal(res["decoded"], plan[:, i * half:(i + 1) * half].reshape(-1))
    assert res["checksum"] == res["want"]


def test_random_crop_is_the_official_resize_then_a_salted_window(tmp_path):
  """real.py crop=True: both sides x (size + 1) / short side (float32, truncated), bilinear, then
  a size x size window at offsets drawn here from default_rng(salt) as the decoder does."""
  pixels = np.random.RandomState(5).randint(0, 256, (40, 60, 3)).astype(np.uint8)
  Image.fromarray(pixels).save(tmp_path / "wide.png")
  scale = np.float32(17) / np.float32(40)
  new_w, new_h = int(scale * np.float32(60)), int(scale * np.float32(40))
  assert (new_w, new_h) == (25, 17)
  resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.BILINEAR))
  windows = set()
  for salt in (0, 1, 2, 3, 123456):
    rng = np.random.default_rng(salt)
    top, left = rng.integers(0, new_h - 16 + 1), rng.integers(0, new_w - 16 + 1)
    got = image_folder.decode_file(tmp_path / "wide.png", 16, salt, crop="random")
    np.testing.assert_array_equal(got, resized[top:top + 16, left:left + 16])
    windows.add((int(top), int(left)))
  assert len(windows) > 1
  centred = image_folder.decode_file(tmp_path / "wide.png", 16, None, crop="random")
  np.testing.assert_array_equal(centred, resized[0:16, 4:20])


def test_salted_reads_and_the_feeder_salt_stream(folder):
  ds = image_folder.load_image_folder(folder, 8, crop="random")
  idx, salts = np.array([3, 3, 5, 0]), np.array([1, 2, 1, 7])
  rows = ds.read(idx, salts=salts)
  for row, i, s in zip(rows, idx, salts):
    np.testing.assert_array_equal(row, ds.decode_salted(int(i), int(s)))
  with pytest.raises(ValueError, match="has no random crops"):
    image_folder.load_image_folder(folder, 8).read(idx, salts=salts)
  with pytest.raises(ValueError, match="data.crop='middle' must be one of"):
    image_folder.load_image_folder(folder, 8, crop="middle")
  feeder = streaming.StreamingFeeder({"x": ds}, {}, {"x": ("x", "idx", "crop")}, "tanh",
                                     num_workers=2, prefetch=False)
  plan = dict(_plan(1), crop=np.random.default_rng(2).integers(0, 1000, (2, 8)).astype(np.int32))
  inputs = feeder.chunk_inputs(plan, sharding.make_mesh(2))
  np.testing.assert_array_equal(np.asarray(inputs["x"]), ds.read(
      plan["idx"].reshape(-1), salts=plan["crop"].reshape(-1)).reshape(2, 8, 8, 8, 3))
  feeder.close()
