r"""Tiles one sample grid per growth phase of a progressive run into one PNG (with captions).

  python experiments/phase_grids.py runs/cifar10_progan_small --out phases.png [--scale 1]

For each level of detail the run passed through, the grid of the last epoch that ended in it
(`<workdir>/samples/epoch_NNNN.png`, G's EMA nearest-upsampled to full size); the caption gives
the epoch and the epoch's mean level of detail (0 = full resolution, fractional = fading in).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from itgan_jax.train import writers  # noqa: E402  pylint: disable=wrong-import-position


def pick_epochs(records: list[dict]) -> list[dict]:
  """The last record of each run of epochs with the same ceil(level of detail) and fading state,
  i.e. one per stable phase and one per fade."""
  picked = []
  for r in records:
    lod = r.get("lod")
    if lod is None:
      continue
    key = (math.ceil(lod - 1e-9), abs(lod - round(lod)) > 1e-6)
    if picked and picked[-1][0] == key:
      picked[-1] = (key, r)
    else:
      picked.append((key, r))
  return [r for _, r in picked]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdir", type=pathlib.Path)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--scale", type=float, default=1.0, help="resize factor of each grid")
  args = parser.parse_args()
  records = [json.loads(l) for l in (args.workdir / "metrics.jsonl").read_text().splitlines()
             if l.strip()]
  chosen = [r for r in pick_epochs(records)
            if (args.workdir / "samples" / f"epoch_{r['epoch']:04d}.png").exists()]
  if not chosen:
    raise SystemExit(f"no sample grids with a level of detail in {args.workdir}")
  grids = []
  for r in chosen:
    image = Image.open(args.workdir / "samples" / f"epoch_{r['epoch']:04d}.png").convert("RGB")
    if args.scale != 1.0:
      image = image.resize((round(image.width * args.scale), round(image.height * args.scale)),
                           Image.NEAREST)
    grids.append((r, image))
  canvas = writers.tile_captioned(
      [[(f"epoch {r['epoch']}, lod {r['lod']:.2f}", g) for r, g in grids]])
  args.out.parent.mkdir(parents=True, exist_ok=True)
  canvas.save(args.out, optimize=True)
  print(f"{args.out}: epochs {[r['epoch'] for r, _ in grids]}, {canvas.width}x{canvas.height}")


if __name__ == "__main__":
  main()
