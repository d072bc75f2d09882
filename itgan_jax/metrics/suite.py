"""All image metrics behind one call: `MetricSuite(metrics, reference)(samples) -> {name: float}`.

Used by `python -m itgan_jax.evaluate` and by the config-scheduled metrics of training
(`itgan_jax/evaluators/image_metrics.py`). Feature extractors are built once and the reference
images' features/statistics are computed once per suite, so calling a suite every few epochs only pays for the samples.

Metrics (names for `--metrics` / `config.evals.<name>.metrics`) and the keys they return:

  is             Inception score, 1008-way `logits_unbiased`, `is_splits` (10) contiguous splits
                 -> 'is', 'is_std'                                       (needs the 1008 head)
  fid            Frechet distance of Inception pool_3 features            -> 'fid'
  kid            kernel Inception distance, 100 subsets of 1000 (smaller if fewer images)
                 -> 'kid', 'kid_std' (+ 'kid_subset_size' when it had to shrink)
  swd            ProGAN multi-scale SWD x1e3 on `swd_images` (16,384) images per set
                 -> 'swd_<res>' per pyramid level and 'swd_avg'
  msssim         ProGAN MS-SSIM of consecutive sample pairs, `msssim_images` (20,000)
                 -> 'msssim' (images whose side is not a multiple of 16 are zero-padded
                    symmetrically, e.g. MNIST 28 -> 32, and 'msssim_padded_to' is recorded)
  mnist_score    classifier score with the MNIST classifier            -> 'mnist_score', '..._std'
  classifier_score  the same with the classifier of `classifier_dataset` -> 'classifier_score', ..
  classifier_fd  Frechet distance of classifier `penultimate` features -> 'classifier_fd'
  classifier_kid KID (the `kid` estimator and subsets) on the same classifier `penultimate`
                 features -> 'classifier_kid', 'classifier_kid_std' (+ '..._subset_size' when
                 it had to shrink)

Grayscale images are repeated to 3 channels for the Inception network only. Samples and
reference must have the same image shape for fid/kid/swd/classifier_fd/classifier_kid.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Sequence

import jax
import numpy as np

from itgan_jax.metrics import classifier as classifier_lib
from itgan_jax.metrics import ms_ssim as ms_ssim_lib
from itgan_jax.metrics import scores
from itgan_jax.metrics import swd as swd_lib

METRICS = ("is", "fid", "kid", "swd", "msssim", "mnist_score", "classifier_score",
           "classifier_fd", "classifier_kid")
ALIASES = {"ms_ssim": "msssim", "inception_score": "is", "sliced_wasserstein": "swd"}
NEEDS_REFERENCE = frozenset({"fid", "kid", "swd", "classifier_fd", "classifier_kid"})
INCEPTION = frozenset({"is", "fid", "kid"})
CLASSIFIER = frozenset({"mnist_score", "classifier_score", "classifier_fd", "classifier_kid"})


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
  """'is,fid' or ['is', 'fid'] -> canonical names (order kept, duplicates dropped); clear errors."""
  if isinstance(metrics, str):
    metrics = [m for m in metrics.replace(" ", "").split(",") if m]
  out = []
  for m in metrics:
    m = ALIASES.get(str(m).lower(), str(m).lower())
    if m not in METRICS:
      raise ValueError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
    if m not in out:
      out.append(m)
  return tuple(out)


@dataclasses.dataclass
class Options:
  """Settings of the metrics (defaults = the papers' / official codes' settings)."""
  is_splits: int = 10
  is_shuffle_seed: int | None = None      # None: contiguous splits (openai); 2020: torch-fidelity
  kid_subsets: int = 100
  kid_subset_size: int = 1000
  swd_images: int = 16384                 # ProGAN: 16,384 images per set
  msssim_images: int = 20000              # ProGAN `metric-msssim-20k`: 10,000 pairs
  seed: int = 0                           # SWD patch positions / directions
  inception_batch_size: int = 64
  classifier_batch_size: int = 1000
  inception_weights: str | None = None    # None: $ITGAN_INCEPTION_WEIGHTS or the default path
  feature_cache: str | None = None        # directory caching Inception features per block (resume)
  classifier_weights: str | None = None   # None: the checked-in file of the dataset
  verify_classifier: bool = True


def _rgb(images: np.ndarray) -> np.ndarray:
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _pad_to_multiple(images: np.ndarray, multiple: int) -> np.ndarray:
  h, w = images.shape[1:3]
  ph, pw = (-h) % multiple, (-w) % multiple
  if not ph and not pw:
    return images
  return np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def _check_images(images, name: str) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"{name} must be uint8 NHWC images with 1 or 3 channels, got {images.dtype} "
                     f"{images.shape} (quantise floats with itgan_jax.data.preprocess.to_uint8)")
  return images


def guess_classifier_dataset(image_shape: Sequence[int]) -> str | None:
  for name, spec in classifier_lib.SPECS.items():
    if tuple(image_shape) == tuple(spec["image_shape"]):
      return name
  return None


class MetricSuite:
  """Computes `metrics` of sample batches against a fixed set of real `reference` images.

  Args:
    metrics: names (see the module docstring) or a comma-separated string.
    reference: uint8 NHWC real images (needed by fid, kid, swd, classifier_fd).
    classifier_dataset: whose classifier to use for the classifier metrics (default: guessed from
      the image shape: 28x28x1 -> mnist, 32x32x3 -> cifar10).
    options: `Options`.
    devices: devices for the (data-parallel) feature extractors; default all local devices.
  """

  def __init__(self, metrics: str | Iterable[str], reference: np.ndarray | None = None, *,
               classifier_dataset: str | None = None, options: Options | None = None,
               devices: Sequence[jax.Device] | None = None):
    self.metrics = parse_metrics(metrics)
    if not self.metrics:
      raise ValueError("no metrics requested")
    self.options = options or Options()
    self.devices = devices
    needs_ref = [m for m in self.metrics if m in NEEDS_REFERENCE]
    if needs_ref and reference is None:
      raise ValueError(f"{', '.join(needs_ref)} compare with real images: pass reference images")
    self.reference = None if reference is None else _check_images(reference, "reference")
    if "mnist_score" in self.metrics:
      if classifier_dataset not in (None, "mnist"):
        raise ValueError("mnist_score uses the MNIST classifier; use classifier_score for "
                         f"{classifier_dataset!r}")
    self.classifier_dataset = classifier_dataset
    self._inception = None
    self._classifier = None
    self._ref_cache: dict[str, Any] = {}
    self.seconds: dict[str, float] = {}

  # -- extractors -----------------------------------------------------------------------------
  def _inception_extractor(self):
    if self._inception is None:
      from itgan_jax.metrics import inception  # pylint: disable=import-outside-toplevel
      self._inception = inception.InceptionFeatureExtractor(
          weights_path=self.options.inception_weights,
          batch_size=self.options.inception_batch_size, devices=self.devices,
          cache_dir=self.options.feature_cache)
      if "is" in self.metrics:
        self._inception.require_logits_head()
    return self._inception

  def _classifier_extractor(self, image_shape):
    if self._classifier is None:
      dataset = self.classifier_dataset
      if "mnist_score" in self.metrics:
        dataset = "mnist"
      if dataset is None:
        dataset = guess_classifier_dataset(image_shape)
        if dataset is None:
          raise ValueError(f"no classifier for images of shape {tuple(image_shape)}; available: "
                           + ", ".join(f"{k} {v['image_shape']}"
                                       for k, v in classifier_lib.SPECS.items()))
      self.classifier_dataset = dataset
      self._classifier = classifier_lib.ClassifierFeatureExtractor(
          dataset, weights_path=self.options.classifier_weights,
          verify=self.options.verify_classifier,
          batch_size=self.options.classifier_batch_size, devices=self.devices)
    return self._classifier

  @property
  def classifier_weights_file(self) -> str | None:
    """The classifier weight file the classifier metrics used (None before any such metric)."""
    if self._classifier is None:
      return None
    return str(self.options.classifier_weights or
               classifier_lib.default_weights_path(self.classifier_dataset))

  def _reference(self, key: str, fn):
    if key not in self._ref_cache:
      self._ref_cache[key] = fn()
    return self._ref_cache[key]

  # -- the metrics ----------------------------------------------------------------------------
  def __call__(self, images: np.ndarray) -> dict[str, float]:
    images = _check_images(images, "samples")
    if self.reference is not None and any(m in NEEDS_REFERENCE for m in self.metrics):
      if images.shape[1:] != self.reference.shape[1:]:
        raise ValueError(f"samples {images.shape[1:]} and reference {self.reference.shape[1:]} "
                         "images differ in shape")
    out: dict[str, float] = {}
    self.seconds = {}
    opts = self.options

    if INCEPTION & set(self.metrics):
      start = time.perf_counter()
      ext = self._inception_extractor()
      wanted = ("pool", "logits_unbiased") if "is" in self.metrics else ("pool",)
      feats = ext(_rgb(images), outputs=wanted)
      if "is" in self.metrics:
        out["is"], out["is_std"] = scores.inception_score(
            feats["logits_unbiased"], opts.is_splits, opts.is_shuffle_seed, from_logits=True)
      if {"fid", "kid"} & set(self.metrics):
        ref_pool = self._reference("inception_pool", lambda: ext(
            _rgb(self.reference), outputs=("pool",))["pool"])
        out.update(self._feature_distances(feats["pool"], ref_pool, "inception", "fid", "kid"))
      self.seconds["inception"] = time.perf_counter() - start

    if CLASSIFIER & set(self.metrics):
      start = time.perf_counter()
      ext = self._classifier_extractor(images.shape[1:])
      feats = ext(images)
      for name in ("mnist_score", "classifier_score"):
        if name in self.metrics:
          out[name], out[name + "_std"] = classifier_lib.classifier_score(
              feats["logits"], opts.is_splits, opts.is_shuffle_seed)
      if {"classifier_fd", "classifier_kid"} & set(self.metrics):
        ref_feats = self._reference("classifier_penultimate", lambda: ext(
            self.reference, outputs=("penultimate",))["penultimate"])
        out.update(self._feature_distances(feats["penultimate"], ref_feats, "classifier",
                                           "classifier_fd", "classifier_kid"))
      self.seconds["classifier"] = time.perf_counter() - start

    if "swd" in self.metrics:
      start = time.perf_counter()
      out.update(self.swd(images))
      self.seconds["swd"] = time.perf_counter() - start

    if "msssim" in self.metrics:
      start = time.perf_counter()
      n = min(opts.msssim_images, len(images)) // 2 * 2
      if n < 2:
        raise ValueError("msssim needs at least 2 sample images")
      x = images[:n]
      padded = _pad_to_multiple(x, 2 ** (len(ms_ssim_lib.WEIGHTS) - 1))
      out["msssim"] = float(_msssim_batched(padded))
      if padded.shape[1:3] != x.shape[1:3]:
        out["msssim_padded_to"] = float(padded.shape[1])
      self.seconds["msssim"] = time.perf_counter() - start
    return out

  def _feature_distances(self, feats: np.ndarray, ref_feats: np.ndarray, network: str,
                         fd_key: str, kid_key: str) -> dict[str, float]:
    """The Frechet distance and KID of `feats` against the reference features of `network`
    (whichever of `fd_key` / `kid_key` the suite computes; the reference statistics once)."""
    out, opts = {}, self.options
    if fd_key in self.metrics:
      mu_r, sig_r = self._reference(f"{network}_stats",
                                    lambda: scores.feature_statistics(ref_feats))
      mu, sig = scores.feature_statistics(feats)
      out[fd_key] = scores.frechet_distance(mu, sig, mu_r, sig_r)
    if kid_key in self.metrics:
      size = min(opts.kid_subset_size, len(feats), len(ref_feats))
      out[kid_key], out[kid_key + "_std"] = scores.kernel_inception_distance(
          feats, ref_feats, num_subsets=opts.kid_subsets, subset_size=size)
      if size != opts.kid_subset_size:
        out[kid_key + "_subset_size"] = float(size)
    return out

  def swd(self, images: np.ndarray) -> dict[str, float]:
    """SWD of the first `swd_images` samples vs as many reference images (official minibatch
    feeding: descriptors are accumulated per minibatch of 256 with fresh patch positions)."""
    opts = self.options
    n = min(opts.swd_images, len(images), len(self.reference))
    key = jax.random.PRNGKey(opts.seed)
    k_ref, k_fake, k_dirs = jax.random.split(key, 3)

    def descriptors(x, k):
      acc = swd_lib.SWDAccumulator(k)
      for start in range(0, n, 256):
        acc.feed(x[start:min(start + 256, n)])
      return acc.descriptors()

    ref = self._reference(f"swd_desc_{n}", lambda: descriptors(self.reference, k_ref))
    res = swd_lib.sliced_wasserstein_distance(descriptors(images, k_fake), ref, k_dirs)
    levels = swd_lib.pyramid_resolutions(images.shape[1])
    out = {f"swd_{r}": float(v) for r, v in zip(levels, np.asarray(res.per_level))}
    out["swd_avg"] = float(res.average)
    if n != opts.swd_images:
      out["swd_images"] = float(n)
    return out


def _msssim_batched(images: np.ndarray, pairs_per_call: int = 1000) -> float:
  """Mean MS-SSIM over consecutive pairs, in chunks of pairs (bounded memory, same mean)."""
  a, b = images[0::2], images[1::2]
  total = 0.0
  for start in range(0, len(a), pairs_per_call):
    total += float(np.sum(np.asarray(ms_ssim_lib.ms_ssim(a[start:start + pairs_per_call],
                                                         b[start:start + pairs_per_call]),
                                     np.float64)))
  return total / len(a)
