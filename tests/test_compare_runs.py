"""experiments/compare_runs.py: alignment at equal steps and at equal training wall time."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO


def _write(path, records):
  path.mkdir()
  (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))


def test_runs_align_by_step_and_by_wall_time(tmp_path):
  # Run a: 10 s per 100-step epoch, metrics every 2 epochs; run b: 30 s per epoch, every epoch.
  _write(tmp_path / "a", [dict(epoch=e, step=100 * e, epoch_time_s=10.0,
                               **({"swd_avg": 100.0 - e} if e % 2 == 0 else {}))
                          for e in range(1, 10)])
  _write(tmp_path / "b", [dict(epoch=e, step=100 * e, epoch_time_s=30.0, swd_avg=50.0 - e)
                          for e in range(1, 4)])
  out = subprocess.run([sys.executable, str(REPO / "experiments" / "compare_runs.py"),
                        str(tmp_path / "a"), str(tmp_path / "b"), "--names", "A", "B",
                        "--metrics", "swd_avg,fid", "--wall_points", "3"],
                       check=True, capture_output=True, text=True).stdout
  lines = out.splitlines()
  assert "A: 9 epochs, step 900, training wall 0.03 h" in lines
  steps = lines[lines.index("At equal generator steps:") + 2:]
  assert steps[0] == "| step | swd_avg (A) | swd_avg (B) |"      # fid: logged by no run
  assert steps[2:4] == ["| 200 | 98 | 48 |", ""]          # the only step both evaluated
  wall = lines[lines.index("At equal training wall time:") + 2:]
  # horizon = the shorter run's 90 s: at 30 s A is at epoch 3 (latest metrics: epoch 2), B at 1;
  # at 90 s A is at epoch 9 (latest metrics: epoch 8), B at 3.
  assert wall[2] == "| 30 | 98 | 49 | 200 | 100 |"
  assert wall[4] == "| 90 | 92 | 47 | 800 | 300 |"


def test_grids_tile_common_steps_one_row_per_run(tmp_path):
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  for name, epochs, shade in (("a", range(1, 8), 0), ("b", range(1, 5), 100)):
    _write(tmp_path / name, [dict(epoch=e, step=100 * e, epoch_time_s=1.0, swd_avg=1.0)
                             for e in epochs])
    (tmp_path / name / "samples").mkdir()
    for e in epochs:
      if e != 2:                                  # epoch 2 has no grid in either run
        Image.fromarray(np.full((10, 12, 3), shade + e, np.uint8)).save(
            tmp_path / name / "samples" / f"epoch_{e:04d}.png")
  out = subprocess.run([sys.executable, str(REPO / "experiments" / "compare_runs.py"),
                        str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "swd_avg",
                        "--grids", str(tmp_path / "g.png"), "--grid_points", "2"],
                       check=True, capture_output=True, text=True).stdout
  assert "sample grids at steps [100, 400]" in out       # common: 100, 300, 400; ends kept
  image = np.asarray(Image.open(tmp_path / "g.png"))
  assert image.shape == (2 * (16 + 10) + 6, 2 * 12 + 6, 3)
  assert image[16, 0, 0] == 1 and image[16, 18, 0] == 4             # run a: epochs 1 and 4
  assert image[16 + 26 + 6, 0, 0] == 101 and image[48, 18, 0] == 104  # run b below
