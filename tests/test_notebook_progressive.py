"""Executes notebooks/progressive.ipynb end to end on the tiny config."""

from __future__ import annotations

import pytest

from tests.helpers import run_notebook


def test_progressive_notebook_runs_on_tiny_config(shared_data_dir, tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  outputs = run_notebook("progressive.ipynb", monkeypatch, tmp_path / "run",
                         data_dir=shared_data_dir)
  assert "8x8 fade-in: images 8 - 20" in outputs      # the schedule of the tiny preset
  # 4 steps: two at 4x4 (LOD 3), two fading 8x8 in (alpha 0, 1/3: LOD 3, 2.67); mean 2.92
  assert "epoch 1: level of detail 2.92" in outputs
  assert "1 sample grids" in outputs
  assert (tmp_path / "run" / "samples" / "epoch_0001.png").exists()
