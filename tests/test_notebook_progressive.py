"""Executes notebooks/progressive.ipynb end to end on the tiny config."""

from __future__ import annotations

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "progressive.ipynb"


def test_progressive_notebook_runs_on_tiny_config(shared_data_dir, tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  monkeypatch.setenv("ITGAN_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("ITGAN_DATA_DIR", str(shared_data_dir))
  monkeypatch.setenv("ITGAN_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert "8x8 fade-in: images 8 - 20" in outputs      # the schedule of the tiny preset
  # 4 steps: two at 4x4 (LOD 3), two fading 8x8 in (alpha 0, 1/3: LOD 3, 2.67); mean 2.92
  assert "epoch 1: level of detail 2.92" in outputs
  assert "1 sample grids" in outputs
  assert (tmp_path / "run" / "samples" / "epoch_0001.png").exists()
