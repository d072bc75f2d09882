"""Image datasets too large for memory: decoded on demand, row by row, by the streaming feeder.

Two sources give the same interface (`StreamingDataset`: labels in memory, images decoded by
`read(indices)` as uint8 `(n, S, S, 3)`):

* `image_folder` (`load_image_folder`): `root/<class>/<file>` with image files (.jpg, .jpeg, .png,
  .bmp, .gif, .webp, .ppm; case-insensitive). Classes are the sub-directories in sorted order
  (labels 0..K-1, as torchvision's `ImageFolder` and the official `convert_imagenet_to_records.py`:
  `sorted(dirs)` -> index), files sorted by name within a class; the dataset index is the position
  in that (class, file) order, so an index plan means the same images on every process.
* `imagenet2012` (`load_tfds_imagenet`): a prepared tfds ArrayRecord copy read with
  `tfds.data_source(..., download=False)` (no TensorFlow needed to read; the images come decoded,
  any size) with its 1000 labels.

Preprocessing (`center_crop_resize`) is the official one (improved-gan `imagenet/utils.py`
`center_crop` + `convert_imagenet_to_records.py`, which stored 128x128 crops in a TFRecord): the
largest centred square (offsets rounded half away from zero, as Python 2 `round`) resized to
`size` x `size` with bilinear filtering (PIL's, antialiased when shrinking; the official went
through `scipy.misc.imresize`, also PIL bilinear), grayscale replicated to RGB, alpha dropped
(official `colorize`). No random crops or flips by default: the official training saw one fixed
crop per image, and a deterministic decode keeps a resumed run bit-exact.

`crop='random'` (image folders; RP-GAN's dog12, ayanc/rpgan `rpglib/real.py` with `crop=True`):
both sides are scaled by (size + 1) / short side (float32, truncated to integers as
`tf.to_int32`), the image resized (PIL bilinear) and a size x size window cut at a random offset.
The offset comes from a per-row *salt* of the epoch plan (`read(indices, salts=...)`,
`np.random.default_rng(salt)`), so a resumed run decodes the same crops; without a salt (the init
batch) the window is centred.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
from typing import Any, Callable

import numpy as np

from itgan_jax.data.base import DatasetCorruptError, DatasetNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm")
NAMES = ("image_folder", "imagenet2012")
CROPS = ("center", "random")


def _round_half_up(x: float) -> int:
  """Python 2 `round` for x >= 0 (the official crop offsets)."""
  return int(np.floor(x + 0.5))


def crop_box(height: int, width: int) -> tuple[int, int, int, int]:
  """(left, top, right, bottom) of the largest centred square (official `center_crop`)."""
  side = min(height, width)
  top = _round_half_up((height - side) / 2.0)
  left = _round_half_up((width - side) / 2.0)
  return left, top, left + side, top + side


def center_crop_resize(image, size: int) -> np.ndarray:
  """A PIL image -> uint8 (size, size, 3): centred square crop, bilinear resize, RGB."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if image.mode != "RGB":
    image = image.convert("RGB")  # L -> replicated, RGBA -> alpha dropped, CMYK/P -> RGB
  width, height = image.size
  box = crop_box(height, width)
  if box != (0, 0, width, height):
    image = image.crop(box)  # crop first: a resize `box=` would filter across the box edges
  if image.size != (size, size):
    image = image.resize((size, size), Image.BILINEAR)
  return np.asarray(image, np.uint8)


def random_crop_resize(image, size: int, salt: int | None) -> np.ndarray:
  """A PIL image -> uint8 (size, size, 3): sides scaled by (size + 1) / short side (official
  `real.py`: `to_int32((float(imsz + 1) / min_s) * in_s)` in float32), bilinear resize, RGB, then
  the window at offsets drawn from `np.random.default_rng(salt)` (centred when `salt` is None)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if image.mode != "RGB":
    image = image.convert("RGB")
  width, height = image.size
  scale = np.float32(size + 1) / np.float32(min(width, height))
  new_w = max(int(scale * np.float32(width)), size)
  new_h = max(int(scale * np.float32(height)), size)
  if image.size != (new_w, new_h):
    image = image.resize((new_w, new_h), Image.BILINEAR)
  if salt is None:
    top, left = (new_h - size) // 2, (new_w - size) // 2
  else:
    rng = np.random.default_rng(int(salt))
    top, left = int(rng.integers(0, new_h - size + 1)), int(rng.integers(0, new_w - size + 1))
  return np.asarray(image.crop((left, top, left + size, top + size)), np.uint8)


def decode_file(path: str | os.PathLike, size: int, salt: int | None = None,
                crop: str = "center") -> np.ndarray:
  """Decodes one image file to uint8 (size, size, 3) (`crop` 'center', or 'random' with the
  window of `salt`); DatasetCorruptError naming the file."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as image:
      image.load()
      if crop == "random":
        return random_crop_resize(image, size, salt)
      return center_crop_resize(image, size)
  except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
    raise DatasetCorruptError(f"cannot decode image {os.fspath(path)} ({type(e).__name__}: {e}); "
                              "delete or replace the file") from None


@dataclasses.dataclass
class StreamingDataset:
  """A dataset whose images are decoded on demand (labels in memory).

  Attributes:
    name: 'image_folder' or 'imagenet2012'.
    train_y: int32 labels of every training example (the dataset index order).
    num_classes: number of classes K (labels 0..K-1).
    image_shape: (size, size, 3) of the decoded images.
    class_names: the class of each label (folder names, or tfds label names).
    decode: `index -> uint8 image_shape` for one example.
    describe: `index -> str` naming the example in error messages.
    decode_salted: `(index, salt) -> uint8 image_shape` (random crops), or None.
  """
  name: str
  train_y: np.ndarray
  num_classes: int
  image_shape: tuple[int, int, int]
  class_names: tuple[str, ...]
  decode: Callable[[int], np.ndarray]
  describe: Callable[[int], str]
  source: str = "files"
  decode_salted: Callable[[int, int], np.ndarray] | None = None

  @property
  def num_train(self) -> int:
    return int(self.train_y.shape[0])

  def read(self, indices, pool: concurrent.futures.Executor | None = None,
           salts=None) -> np.ndarray:
    """uint8 `(len(indices),) + image_shape` images, decoded in parallel on `pool` if given;
    each distinct index is decoded once. With `salts` (one int per index: random crops,
    `decode_salted`) every (index, salt) row is decoded."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= self.num_train):
      raise IndexError(f"{self.name}: indices outside [0, {self.num_train})")
    if salts is not None:
      if self.decode_salted is None:
        raise ValueError(f"{self.name} has no random crops (decode_salted); pass no salts")
      salts = np.asarray(salts, np.int64).reshape(-1)
      if salts.shape != indices.shape:
        raise ValueError(f"{salts.size} salts for {indices.size} indices")
      unique, inverse = indices, np.arange(indices.size)
      rows = list(zip(indices.tolist(), salts.tolist()))
      decoded = list(pool.map(lambda r: self.decode_salted(*r), rows) if pool is not None
                     else (self.decode_salted(*r) for r in rows))
    else:
      unique, inverse = np.unique(indices, return_inverse=True)
      decoded = list(pool.map(self.decode, unique.tolist()) if pool is not None
                     else map(self.decode, unique.tolist()))
    for i, image in zip(unique, decoded):
      if image.shape != self.image_shape or image.dtype != np.uint8:
        raise DatasetCorruptError(f"{self.describe(int(i))} decoded to {image.dtype} "
                                  f"{image.shape}, expected uint8 {self.image_shape}")
    stacked = (np.stack(decoded) if decoded
               else np.zeros((0,) + self.image_shape, np.uint8))
    return stacked[inverse.reshape(-1)]


def scan_image_folder(root: str | os.PathLike) -> tuple[list[str], list[pathlib.Path], np.ndarray]:
  """(class names, files, int32 labels) of `root/<class>/<file>`; clear errors for a missing root,
  no class folders, or a class folder without images."""
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise DatasetNotFoundError(f"image folder root {root} does not exist or is not a directory; "
                               "set --config.data.dir to a directory holding one sub-directory "
                               "of images per class (root/<class>/*.jpg|png)")
  classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
  if not classes:
    raise DatasetNotFoundError(f"image folder root {root} has no class sub-directories; expected "
                               "root/<class>/*.jpg|png (one directory per class)")
  files, labels = [], []
  for label, name in enumerate(classes):
    found = sorted(e.name for e in os.scandir(root / name)
                   if e.is_file() and not e.name.startswith(".")
                   and e.name.lower().endswith(IMAGE_EXTENSIONS))
    if not found:
      raise DatasetNotFoundError(f"class folder {root / name} holds no image files "
                                 f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add its images")
    files.extend(root / name / f for f in found)
    labels.extend([label] * len(found))
  return classes, files, np.asarray(labels, np.int32)


def load_image_folder(root: str | os.PathLike, image_size: int,
                      crop: str = "center") -> StreamingDataset:
  """The `image_folder` dataset of `root` (module docstring), decoded to `image_size` squares
  (`crop` 'center', or 'random': salted windows of the short-side-(size + 1) resize)."""
  _check_size(image_size)
  if crop not in CROPS:
    raise ValueError(f"config.data.crop={crop!r} must be one of {CROPS}")
  classes, files, labels = scan_image_folder(root)
  paths = [os.fspath(f) for f in files]
  salted = None
  if crop == "random":
    salted = lambda i, salt: decode_file(paths[i], image_size, salt, crop)  # noqa: E731
  return StreamingDataset(
      name="image_folder", train_y=labels, num_classes=len(classes),
      image_shape=(image_size, image_size, 3), class_names=tuple(classes),
      decode=lambda i: decode_file(paths[i], image_size, None, crop),
      describe=lambda i: f"image {paths[i]}", decode_salted=salted)


def _tfds_labels(source, split: str, n: int, cache_dir: pathlib.Path | None) -> np.ndarray:
  """The labels of every record (one pass over the records, images left encoded), cached as
  `<cache_dir>/imagenet2012_<split>_labels_<n>.npy` so later runs skip the pass."""
  path = cache_dir / f"imagenet2012_{split}_labels_{n}.npy" if cache_dir else None
  if path is not None and path.is_file():
    labels = np.load(path)
    if labels.shape == (n,) and labels.dtype == np.int32:
      return labels
  labels = np.fromiter((int(source[i]["label"]) for i in range(n)), np.int32, count=n)
  if path is not None:
    try:
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_suffix(".tmp.npy")
      np.save(tmp, labels)
      os.replace(tmp, path)
    except OSError:
      pass  # a read-only cache only costs the pass next time
  return labels


def load_tfds_imagenet(tfds_data_dir: str | os.PathLike | None, image_size: int,
                       split: str = "train", tfds_module: Any = None,
                       label_cache_dir: str | os.PathLike | None = None) -> StreamingDataset:
  """tfds `imagenet2012` (a prepared ArrayRecord copy, never downloaded) as a StreamingDataset.

  The records are read with the image left encoded (`tfds.decode.SkipDecoding`) and decoded here
  with PIL like the image folder's files. Reading every label once takes a pass over the records;
  the labels are cached in `label_cache_dir` (default: the download cache of `datasets.py`).
  `tfds_module` replaces `tensorflow_datasets` (tests)."""
  _check_size(image_size)
  tfds = tfds_module
  if tfds is None:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  where = os.fspath(pathlib.Path(tfds_data_dir).expanduser()) if tfds_data_dir else None
  try:
    source = tfds.data_source("imagenet2012", split=split, data_dir=where, download=False,
                              decoders={"image": tfds.decode.SkipDecoding()})
    n = len(source)
  except Exception as e:  # tfds raises many types when nothing usable is prepared.
    raise DatasetNotFoundError(
        f"no usable tfds ArrayRecord copy of imagenet2012 (split {split!r}) in "
        f"{where or 'the tfds default data dir'}: {type(e).__name__}: {e}. Prepare one once "
        "with TensorFlow and the manually downloaded ILSVRC2012 tars (tfds build imagenet2012 "
        "--file_format=array_record --data_dir=DIR --manual_dir=TARS), then pass "
        "--config.data.tfds_data_dir=DIR; or use data.name='image_folder' on an extracted "
        "train directory (root/<wnid>/*.JPEG).") from e
  label_feature = source.dataset_info.features["label"]
  num_classes = int(label_feature.num_classes)
  names = tuple(getattr(label_feature, "names", None) or (str(i) for i in range(num_classes)))
  if label_cache_dir is None:
    from itgan_jax.data import datasets  # pylint: disable=import-outside-toplevel
    label_cache_dir = datasets.default_cache_dir()
  labels = _tfds_labels(source, split, n, pathlib.Path(label_cache_dir).expanduser())
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise DatasetCorruptError(f"tfds imagenet2012/{split} has labels outside [0, {num_classes})")

  def describe(i: int) -> str:
    return f"tfds imagenet2012/{split}[{i}]"

  def decode(i: int) -> np.ndarray:
    import io  # pylint: disable=import-outside-toplevel
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
    data = source[i]["image"]
    try:
      if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim in (2, 3):
        image = Image.fromarray(data if data.ndim == 2 or data.shape[2] != 1 else data[:, :, 0])
        return center_crop_resize(image, image_size)
      with Image.open(io.BytesIO(bytes(data))) as image:
        image.load()
        return center_crop_resize(image, image_size)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, TypeError) as e:
      raise DatasetCorruptError(f"cannot decode {describe(i)} ({type(e).__name__}: {e})") from None

  return StreamingDataset(
      name="imagenet2012", train_y=labels, num_classes=num_classes,
      image_shape=(image_size, image_size, 3), class_names=names, decode=decode,
      describe=describe, source="tfds")


def _check_size(image_size: int) -> None:
  if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
    raise ValueError(f"config.data.image_size={image_size!r} must be an integer >= 1 (the side "
                     "of the square crops, official 128)")


def load(data) -> StreamingDataset:
  """The streaming dataset of a `config.data` block (`name` in NAMES, `dir`, `tfds_data_dir`,
  `image_size`, `crop`)."""
  size = data.get("image_size", 128)
  if data.name == "image_folder":
    if not data.get("dir"):
      raise ValueError("data.name='image_folder' needs --config.data.dir=ROOT (a directory with "
                       "one sub-directory of images per class)")
    return load_image_folder(data.dir, size, data.get("crop", "center"))
  if data.get("crop", "center") != "center":
    raise ValueError(f"data.crop={data.crop!r} is offered for data.name='image_folder' only")
  if data.name == "imagenet2012":
    if data.get("allow_download", False):
      raise ValueError("imagenet2012 cannot be downloaded (the ILSVRC2012 images need a manual "
                       "download); set data.allow_download=False and prepare a tfds copy")
    return load_tfds_imagenet(data.get("tfds_data_dir"), size)
  raise ValueError(f"config.data.name={data.name!r} is not a streaming dataset {NAMES}")


def first_images(dataset: StreamingDataset, count: int, seed: int) -> np.ndarray:
  """uint8 images of the first `count` indices of `RandomState(seed).permutation(N)` (init batch,
  as `variants.base.init_batch` does for in-memory data)."""
  if not 1 <= count <= dataset.num_train:
    raise ValueError(f"config.data.init_size={count} must be in [1, {dataset.num_train}]")
  idx = np.random.RandomState(seed).permutation(dataset.num_train)[:count]
  return dataset.read(idx)

