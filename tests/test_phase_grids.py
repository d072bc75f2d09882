"""experiments/phase_grids.py: one epoch per stable phase and per fade, tiled into one PNG."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.helpers import load_script


def _module():
  return load_script("experiments/phase_grids.py")


LODS = [3.0, 3.0, 2.75, 2.25, 2.0, 2.0, 1.75, 1.25, 1.0]   # the CIFAR :small run's first epochs


def test_picks_the_last_epoch_of_each_phase():
  records = [dict(epoch=i + 1, lod=lod) for i, lod in enumerate(LODS)]
  assert [r["epoch"] for r in _module().pick_epochs(records)] == [2, 4, 6, 8, 9]


def test_tiles_the_chosen_grids(tmp_path, monkeypatch):
  (tmp_path / "samples").mkdir()
  (tmp_path / "metrics.jsonl").write_text("\n".join(
      json.dumps(dict(epoch=i + 1, lod=lod)) for i, lod in enumerate(LODS)))
  for i in range(len(LODS)):
    Image.fromarray(np.full((20, 30, 3), 10 * i, np.uint8)).save(
        tmp_path / "samples" / f"epoch_{i + 1:04d}.png")
  monkeypatch.setattr("sys.argv", ["phase_grids.py", str(tmp_path), "--out",
                                   str(tmp_path / "out.png")])
  _module().main()
  out = np.asarray(Image.open(tmp_path / "out.png"))
  assert out.shape == (16 + 20, 5 * 30 + 4 * 6, 3)
  assert out[20, 0, 0] == 10 and out[20, 36, 0] == 30      # epochs 2 and 4, side by side
