"""The resumable block cache of extractor features (metrics/feature_cache.py)."""

import os

import chex
import numpy as np
import pytest

from itgan_jax.metrics import feature_cache


class CountingExtractor:
  """A deterministic 'feature extractor' that records which images it was asked for."""

  def __init__(self):
    self.seen = 0

  def __call__(self, block):
    self.seen += len(block)
    x = block.reshape(len(block), int(np.prod(block.shape[1:]))).astype(np.float32)
    return {"mean": x.mean(axis=1, keepdims=True), "sum": x.sum(axis=1, keepdims=True),
            "extra": x[:, :1]}


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)


def test_blocks_without_cache_equal_one_call():
  images = _images(10)
  fn = CountingExtractor()
  out = feature_cache.features_in_blocks(images, ("mean", "sum"), fn, block_size=3)
  want = CountingExtractor()(images)
  assert set(out) == {"mean", "sum"} and fn.seen == 10
  for k in out:
    chex.assert_shape(out[k], (10, 1))
    np.testing.assert_array_equal(out[k], want[k])


def test_cache_resumes_and_keys_on_content_outputs_and_weights(tmp_path):
  images = _images(10)
  first = CountingExtractor()
  out = feature_cache.features_in_blocks(images, ("mean",), first, block_size=4,
                                         cache_dir=tmp_path, fingerprint="w1")
  assert first.seen == 10 and len(list(tmp_path.glob("*.npz"))) == 3
  again = CountingExtractor()
  out2 = feature_cache.features_in_blocks(images, ("mean",), again, block_size=4,
                                          cache_dir=tmp_path, fingerprint="w1")
  assert again.seen == 0
  np.testing.assert_array_equal(out2["mean"], out["mean"])
  # One changed image: only its block is recomputed.
  changed = images.copy()
  changed[5, 0, 0, 0] ^= 1
  third = CountingExtractor()
  out3 = feature_cache.features_in_blocks(changed, ("mean",), third, block_size=4,
                                          cache_dir=tmp_path, fingerprint="w1")
  assert third.seen == 4
  np.testing.assert_array_equal(out3["mean"], CountingExtractor()(changed)["mean"])
  # Other weights or other outputs never reuse the blocks.
  for fingerprint, outputs in (("w2", ("mean",)), ("w1", ("mean", "sum"))):
    fn = CountingExtractor()
    feature_cache.features_in_blocks(images, outputs, fn, block_size=4, cache_dir=tmp_path,
                                     fingerprint=fingerprint)
    assert fn.seen == 10


def test_corrupt_block_is_recomputed_and_no_temp_files_remain(tmp_path):
  images = _images(6)
  feature_cache.features_in_blocks(images, ("sum",), CountingExtractor(), block_size=3,
                                   cache_dir=tmp_path, fingerprint="w")
  blocks = sorted(tmp_path.glob("*.npz"))
  blocks[0].write_bytes(b"not an npz file")
  fn = CountingExtractor()
  out = feature_cache.features_in_blocks(images, ("sum",), fn, block_size=3, cache_dir=tmp_path,
                                         fingerprint="w")
  assert fn.seen == 3
  np.testing.assert_array_equal(out["sum"], CountingExtractor()(images)["sum"])
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_interrupted_extraction_keeps_finished_blocks(tmp_path):
  images = _images(9)

  class Crash(CountingExtractor):
    def __call__(self, block):
      if self.seen >= 6:
        raise KeyboardInterrupt
      return super().__call__(block)

  with pytest.raises(KeyboardInterrupt):
    feature_cache.features_in_blocks(images, ("mean",), Crash(), block_size=3,
                                     cache_dir=tmp_path, fingerprint="w")
  assert len(list(tmp_path.glob("*.npz"))) == 2
  fn = CountingExtractor()
  out = feature_cache.features_in_blocks(images, ("mean",), fn, block_size=3, cache_dir=tmp_path,
                                         fingerprint="w")
  assert fn.seen == 3
  np.testing.assert_array_equal(out["mean"], CountingExtractor()(images)["mean"])


def test_errors_and_empty_input(tmp_path):
  with pytest.raises(ValueError, match="fingerprint"):
    feature_cache.features_in_blocks(_images(2), ("mean",), CountingExtractor(), block_size=1,
                                     cache_dir=tmp_path)
  with pytest.raises(ValueError, match="block_size"):
    feature_cache.features_in_blocks(_images(2), ("mean",), CountingExtractor(), block_size=0)
  with pytest.raises(KeyError, match="did not return"):
    feature_cache.features_in_blocks(_images(2), ("nope",), CountingExtractor(), block_size=1)
  empty = feature_cache.features_in_blocks(_images(0), ("mean",), CountingExtractor(),
                                           block_size=2)
  chex.assert_shape(empty["mean"], (0, 1))


def test_fingerprint_changes_with_any_weight():
  w = {"a": np.arange(4, dtype=np.float32), "b": np.ones((2, 2), np.float32)}
  base = feature_cache.fingerprint_arrays(w)
  assert base == feature_cache.fingerprint_arrays(dict(reversed(list(w.items()))))
  w2 = dict(w, a=w["a"].copy())
  w2["a"][3] = np.nextafter(np.float32(3), np.float32(4))
  assert feature_cache.fingerprint_arrays(w2) != base
  assert feature_cache.fingerprint_arrays({"a": w["a"].astype(np.float64), "b": w["b"]}) != base
