"""Run outputs a person can read: metrics as JSONL and TensorBoard events, sample grids and curves as PNG."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Mapping

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, rows: int | None = None) -> np.ndarray:
  """Tiles uint8 images (N, H, W, C) into one (rows*H, cols*W, C) array with 1-pixel gaps."""
  n, h, w, c = images.shape
  rows = rows or int(math.ceil(math.sqrt(n)))
  cols = int(math.ceil(n / rows))
  grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, c), 255, np.uint8)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = images[i]
  return grid


def save_png(path: str | pathlib.Path, image: np.ndarray) -> None:
  """Writes a uint8 (H, W, 1|3) array as PNG, atomically."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp.png")
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp)
  tmp.replace(path)


def tile_captioned(rows: list[list[tuple[str, Image.Image]]], gap: int = 6,
                   caption: int = 16) -> Image.Image:
  """Tiles PIL images into one RGB image, row by row, each under a one-line caption.

  Args:
    rows: rows of (caption, image) pairs; columns are as wide as their widest image.
    gap: white pixels between neighbouring tiles.
    caption: height of the caption strip above every tile.

  Returns:
    The tiled image (white background, black captions).
  """
  from PIL import ImageDraw  # pylint: disable=import-outside-toplevel
  columns = max(len(r) for r in rows)
  widths = [max(r[j][1].width for r in rows if j < len(r)) for j in range(columns)]
  heights = [max(image.height for _, image in r) + caption for r in rows]
  canvas = Image.new("RGB", (sum(widths) + gap * (columns - 1),
                             sum(heights) + gap * (len(rows) - 1)), "white")
  draw = ImageDraw.Draw(canvas)
  y = 0
  for r, height in zip(rows, heights):
    x = 0
    for (text, image), width in zip(r, widths):
      draw.text((x + 2, y + 2), text, fill="black")
      canvas.paste(image.convert("RGB"), (x, y + caption))
      x += width + gap
    y += height + gap
  return canvas


def plot_curves(records: list[dict], keys: list[str], path: str | pathlib.Path,
                x_key: str = "epoch") -> bool:
  """Plots metric curves to PNG with matplotlib (if installed); returns whether it wrote the file."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  keys = [k for k in keys if any(k in r for r in records)]
  if not keys:
    return False
  fig, axes = plt.subplots(len(keys), 1, figsize=(6, 2.2 * len(keys)), squeeze=False)
  for ax, key in zip(axes[:, 0], keys):
    pts = [(r[x_key], r[key]) for r in records if key in r]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
  axes[-1, 0].set_xlabel(x_key)
  fig.tight_layout()
  tmp = pathlib.Path(path).with_suffix(".tmp.png")
  fig.savefig(tmp, dpi=80)
  plt.close(fig)
  tmp.replace(path)
  return True


class MetricWriter:
  """Appends one JSON record per epoch to `metrics.jsonl` and mirrors scalars to TensorBoard."""

  def __init__(self, workdir: str | pathlib.Path, tensorboard: bool = True,
               purge_step: int | None = None):
    """`purge_step`: a resumed run's step; its event file starts with TensorBoard's purge marker
    so that readers drop the older files' points at and after that step."""
    self.workdir = pathlib.Path(workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    self.jsonl = self.workdir / "metrics.jsonl"
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter
      # A resumed run's file gets its own name even when it starts in the same second.
      self._tb = SummaryWriter(str(self.workdir / "tensorboard"), purge_step=purge_step,
                               filename_suffix=f".from{purge_step}" if purge_step else "")

  def records(self) -> list[dict]:
    """The logged records. A cut-off last line (a kill while appending) is dropped (the resume
    rewrites the file without it); any other unreadable line is an error naming file and line."""
    if not self.jsonl.exists():
      return []
    lines = self.jsonl.read_text().split("\n")
    out = []
    for number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        out.append(json.loads(line))
      except ValueError as e:
        if number == len(lines):  # the last line, without its newline: a torn append
          break
        raise ValueError(f"{self.jsonl}, line {number}, is not a JSON record ({e}); repair or "
                         "delete that line to resume") from None
    return out

  def truncate_after(self, epoch: int) -> None:
    """Drops records of epochs > `epoch` (written after the checkpoint a resumed run starts from)."""
    kept = [r for r in self.records() if r.get("epoch", 0) <= epoch]
    tmp = self.jsonl.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(self.jsonl)

  def write(self, step: int, record: Mapping[str, float]) -> None:
    with self.jsonl.open("a") as f:
      f.write(json.dumps(dict(record)) + "\n")
    if self._tb is not None:
      for key, value in record.items():
        if isinstance(value, (int, float)) and key != "epoch":
          self._tb.add_scalar(key, value, step)
      self._tb.flush()

  def write_image(self, step: int, tag: str, image: np.ndarray) -> None:
    if self._tb is not None:
      self._tb.add_image(tag, image, step, dataformats="HWC")
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
