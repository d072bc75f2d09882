"""Small CNN classifiers for scores that run without downloads: "MNIST score" and classifier FD.

The Inception score and FID need the 2015 TF Inception weights, which cannot be fetched on every
machine and are meaningless on 28x28 digits. Following the common practice for MNIST GANs (e.g. the
"MNIST score" of Li et al. / the MNIST-classifier IS of many GAN papers), we train our own small
classifier on the real training set (`python -m itgan_jax.metrics.train_classifier`), ship its
weights with their sha256 (`weights/SHA256SUMS`, checked at load time) and define:

* **classifier score** ("MNIST score" for MNIST): the Inception-score formula of
  `scores.inception_score` (Salimans et al. 2016, openai `inception_score/model.py`: softmax,
  `splits`=10 contiguous parts, exp(E_x KL(p(y|x) || p(y))), mean and std over parts, float64) applied
  to this classifier's 10-way logits. Its ceiling is 10 (the number of classes); the real test set
  sets the practical ceiling.
* **classifier FD**: `scores.frechet_distance` (pytorch-fid's formula) on the classifier's
  `penultimate` features (MNIST: the 64-unit hidden layer after its ReLU; CIFAR-10: the global
  average pool of the last conv, 96-d), with `scores.feature_statistics` (mean, ddof-1 covariance, float64).

Numbers are only comparable between runs that use the *same weight file* (same sha256); they are
not comparable to Inception-based IS/FID (docs/metrics.md lists every difference).

Networks (flax linen, one `params` collection, no batch statistics, no dropout: a pure function of
the image). Input uint8 NHWC [0, 255] (or floats in that range), scaled to (x - 127.5) / 127.5.
  MNIST (28x28x1, `MnistClassifier`, 105k parameters): conv3x3(16) relu maxpool -> conv3x3(32) relu
    maxpool -> flatten -> dense(64) relu = `penultimate` (64-d) -> dense(10) = `logits`.
  CIFAR-10 (32x32x3, `GapClassifier(widths=(32, 64, 96))`, 204,970 parameters, 824 kB file): six
    3x3 convs (32, 32/2, 64, 64/2, 96, 96) with ReLU -> global average pool = `penultimate` (96-d)
    -> dense(10) = `logits`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import zipfile
from typing import Any, Iterable, Mapping, Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from itgan_jax.metrics import batched_apply, scores

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"
SHA256_TABLE = WEIGHTS_DIR / "SHA256SUMS"
FORMAT = "itgan_jax/classifier/v1"
METADATA_KEY = "__metadata__"
NUM_CLASSES = 10


def _conv(c: int, stride: int, name: str) -> nn.Conv:
  return nn.Conv(c, (3, 3), strides=(stride, stride), padding="SAME", name=name)


def _scale(images: jax.Array) -> jax.Array:
  return (jnp.asarray(images).astype(jnp.float32) - 127.5) / 127.5


class MnistClassifier(nn.Module):
  """LeNet-style: conv3x3(c1) relu maxpool2 -> conv3x3(c2) relu maxpool2 -> flatten
  -> dense(hidden) relu = `penultimate` -> dense(10) = `logits`."""
  widths: Sequence[int] = (16, 32)
  hidden: int = 64
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    x = _scale(images)
    for i, c in enumerate(self.widths):
      x = nn.relu(_conv(c, 1, f"conv{i + 1}")(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    penultimate = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
    logits = nn.Dense(self.num_classes, name="logits")(penultimate)
    return {"penultimate": penultimate, "logits": logits}


class GapClassifier(nn.Module):
  """All-conv: conv3x3(c1) relu, conv3x3(c1, /2) relu, conv3x3(c2) relu, conv3x3(c2, /2) relu,
  conv3x3(c3) relu, conv3x3(c3) relu -> global average pool = `penultimate` -> dense(10)."""
  widths: Sequence[int] = (64, 128, 256)
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    x = _scale(images)
    c1, c2, c3 = self.widths
    for i, (c, s) in enumerate(((c1, 1), (c1, 2), (c2, 1), (c2, 2), (c3, 1), (c3, 1))):
      x = nn.relu(_conv(c, s, f"conv{i + 1}")(x))
    penultimate = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, name="logits")(penultimate)
    return {"penultimate": penultimate, "logits": logits}


# dataset -> (module, image shape, weight file name)
SPECS: dict[str, dict[str, Any]] = {
    "mnist": dict(module=MnistClassifier(), image_shape=(28, 28, 1),
                  file="mnist_classifier.npz"),
    # (32, 64, 96): 204,970 parameters, an 824 kB float32 file (the default (64, 128, 256) has
    # 1.15M = 4.6 MB, too big to commit).
    "cifar10": dict(module=GapClassifier(widths=(32, 64, 96)),
                    image_shape=(32, 32, 3), file="cifar10_classifier.npz"),
}


def _spec(dataset: str) -> dict[str, Any]:
  if dataset not in SPECS:
    raise ValueError(f"no classifier for dataset {dataset!r}; available: {sorted(SPECS)}")
  return SPECS[dataset]


def default_weights_path(dataset: str) -> pathlib.Path:
  """The checked-in weight file of `dataset`'s classifier (itgan_jax/metrics/weights/...)."""
  return WEIGHTS_DIR / _spec(dataset)["file"]


def train_command(dataset: str) -> str:
  return (f"python -m itgan_jax.metrics.train_classifier --dataset={dataset} "
          f"--out={default_weights_path(dataset)}")


def init_params(dataset: str, seed: int = 0) -> dict[str, Any]:
  """Random parameters (flax default initialisers) of `dataset`'s classifier."""
  spec = _spec(dataset)
  x = jnp.zeros((1,) + spec["image_shape"], jnp.uint8)
  return spec["module"].init(jax.random.PRNGKey(seed), x)["params"]


# ------------------------------------------------------------------------------------------------
# Weight files and the sha256 table.

def sha256_file(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def read_sha256_table(table: str | os.PathLike = SHA256_TABLE) -> dict[str, str]:
  """`sha256sum` format (`<hex>  <file name>` per line, '#' comments) -> {file name: hex}."""
  table = pathlib.Path(table)
  if not table.is_file():
    return {}
  out = {}
  for line in table.read_text().splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    digest, name = line.split(maxsplit=1)
    out[name.lstrip("*")] = digest.lower()
  return out


def write_sha256_entry(name: str, digest: str, table: str | os.PathLike = SHA256_TABLE) -> None:
  """Adds or replaces the table line of `name` (kept sorted; `sha256sum -c SHA256SUMS` works)."""
  entries = read_sha256_table(table)
  entries[name] = digest
  table = pathlib.Path(table)
  header = ("# sha256 of the classifier weight files (checked by itgan_jax.metrics.classifier)\n"
            "# regenerate with: python -m itgan_jax.metrics.train_classifier --dataset=NAME\n")
  table.parent.mkdir(parents=True, exist_ok=True)
  tmp = table.with_name(table.name + ".tmp")
  tmp.write_text(header + "".join(f"{d}  {n}\n" for n, d in sorted(entries.items())))
  os.replace(tmp, table)


def save_weights(params: Mapping[str, Any], metadata: Mapping[str, Any],
                 path: str | os.PathLike) -> str:
  """Writes params as an uncompressed, timestamp-free .npz (same weights -> same sha256)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  flat = {k: np.asarray(v, np.float32)
          for k, v in traverse_util.flatten_dict(dict(params), sep="/").items()}
  arrays = {k: flat[k] for k in sorted(flat)}
  arrays[METADATA_KEY] = np.asarray(json.dumps(dict(metadata, format=FORMAT), sort_keys=True))
  tmp = path.with_name(path.name + ".tmp")
  with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
    for key, value in arrays.items():
      info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
      with zf.open(info, "w") as member:
        np.lib.format.write_array(member, value, allow_pickle=False)
  os.replace(tmp, path)
  return sha256_file(path)


class WeightsError(RuntimeError):
  """A classifier weight file is missing, unknown or does not match its checked-in sha256."""


def load_weights(dataset: str, path: str | os.PathLike | None = None, *,
                 expected_sha256: str | None = None, verify: bool = True,
                 table: str | os.PathLike = SHA256_TABLE) -> tuple[dict[str, Any], dict[str, Any]]:
  """(params, metadata) of `dataset`'s classifier, after checking the file's sha256.

  The expected digest is `expected_sha256` if given, else the line of the file's name in the
  checked-in table `weights/SHA256SUMS`. A missing file, a name absent from the table or a
  different digest raise `WeightsError` with the command that (re)creates the file.
  `verify=False` skips the check (your own experimental weights; numbers then carry no guarantee).
  """
  _spec(dataset)  # unknown datasets fail here with the list of known ones
  path = pathlib.Path(path) if path is not None else default_weights_path(dataset)
  if not path.is_file():
    raise WeightsError(
        f"classifier weights for {dataset!r} not found at {path}. Create them with\n"
        f"  {train_command(dataset)}\n(trains on the real {dataset} training set; see "
        "docs/metrics.md).")
  if verify:
    if expected_sha256 is None:
      entries = read_sha256_table(table)
      if path.name not in entries:
        raise WeightsError(
            f"{path.name} has no entry in the sha256 table {table}; scores from unregistered "
            "weights are not comparable. Register it (train_classifier does so for files it writes "
            f"into {WEIGHTS_DIR}), pass expected_sha256=..., or verify=False.")
      expected_sha256 = entries[path.name]
    actual = sha256_file(path)
    if actual != expected_sha256.lower():
      raise WeightsError(
          f"sha256 mismatch for {path}: the file has {actual}, the table {table} expects "
          f"{expected_sha256}. The file was modified or retrained; restore it from git "
          f"(git checkout -- {path}) or retrain and register it with\n  {train_command(dataset)}")
  with np.load(path, allow_pickle=False) as data:
    if METADATA_KEY not in data.files:
      raise WeightsError(f"{path}: not an itgan_jax classifier weight file (no {METADATA_KEY})")
    metadata = json.loads(str(data[METADATA_KEY]))
    flat = {k: np.asarray(data[k]) for k in data.files if k != METADATA_KEY}
  if metadata.get("format") != FORMAT:
    raise WeightsError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
  if metadata.get("dataset") != dataset:
    raise WeightsError(f"{path}: weights of the {metadata.get('dataset')!r} classifier, "
                       f"not {dataset!r}")
  params = traverse_util.unflatten_dict(flat, sep="/")
  want = jax.tree_util.tree_map(lambda x: tuple(x.shape), jax.eval_shape(
      lambda: init_params(dataset)))
  got = jax.tree_util.tree_map(lambda x: tuple(x.shape), params)
  if want != got:
    raise WeightsError(f"{path}: parameter names/shapes do not match the {dataset} classifier "
                       f"architecture ({got} vs {want})")
  return params, metadata


# ------------------------------------------------------------------------------------------------
# Batched, jitted, data-parallel features.

class ClassifierFeatureExtractor:
  """{'logits': (N, 10), 'penultimate': (N, d)} float32 of uint8 NHWC images, in fixed-size
  jitted batches (last one zero-padded), sharded over the batch axis when several devices exist
  (as `inception.InceptionFeatureExtractor`).

  Args:
    dataset: 'mnist' or 'cifar10' (architecture and input shape).
    params: parameters; if None they are loaded (and sha256-checked) by `load_weights`.
    weights_path: a weight file instead of the checked-in default.
    verify: check the sha256 (see `load_weights`).
    batch_size: images per step (rounded up to a multiple of the device count).
    devices: devices to shard over (default: all local devices).
  """

  def __init__(self, dataset: str, params: Mapping[str, Any] | None = None, *,
               weights_path: str | os.PathLike | None = None, verify: bool = True,
               batch_size: int = 1000, devices: Sequence[jax.Device] | None = None):
    spec = _spec(dataset)
    self.dataset = dataset
    self.image_shape = spec["image_shape"]
    self.metadata: dict[str, Any] = {}
    if params is None:
      params, self.metadata = load_weights(dataset, weights_path, verify=verify)
    self._batched_apply = batched_apply.BatchedApply(spec["module"], params,
                                                     batch_size=batch_size, devices=devices)
    self.devices = self._batched_apply.devices
    self.batch_size = self._batched_apply.batch_size

  def __call__(self, images: np.ndarray,
               outputs: Iterable[str] = ("logits", "penultimate")) -> dict[str, np.ndarray]:
    wanted = tuple(outputs)
    for name in wanted:
      if name not in ("logits", "penultimate"):
        raise ValueError(f"unknown classifier output {name!r}; use 'logits' or 'penultimate'")
    images = np.asarray(images)
    if images.dtype != np.uint8:
      raise TypeError(f"classifier features need uint8 images in [0, 255], got {images.dtype}; "
                      "quantise samples first (itgan_jax.data.preprocess.to_uint8)")
    if images.ndim != 4 or images.shape[1:] != self.image_shape:
      raise ValueError(f"the {self.dataset} classifier takes NHWC images of shape "
                       f"(N,) + {self.image_shape}, got {images.shape}")
    return self._batched_apply(images, wanted)


# ------------------------------------------------------------------------------------------------
# Scores (the formulas are those of scores.py, reused, not re-implemented).

def classifier_score(logits: np.ndarray, splits: int = 10,
                     shuffle_seed: int | None = None) -> tuple[float, float]:
  """"MNIST score": `scores.inception_score` of the classifier's logits; (mean, std) over splits."""
  return scores.inception_score(logits, splits=splits, shuffle_seed=shuffle_seed, from_logits=True)


def classifier_fd(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Frechet distance (pytorch-fid formula) between two sets of `penultimate` features."""
  mu_a, sigma_a = scores.feature_statistics(features_a)
  mu_b, sigma_b = scores.feature_statistics(features_b)
  return scores.frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
