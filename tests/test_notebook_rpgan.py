"""notebooks/rpgan.ipynb: its code parses, a wrong backend fails loudly, and it runs end to end on
the tiny MNIST config (both runs, one epoch each: K projections and the single-D baseline)."""

from __future__ import annotations

import ast
import pathlib

import nbformat
import pytest

from tests.helpers import run_notebook

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "rpgan.ipynb"


def test_notebook_code_parses_and_uses_the_rpgan_config():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = [c.source for c in nb.cells if c.cell_type == "code"]
  for source in code:
    ast.parse(source)
  text = "\n".join(code)
  assert 'CONFIG = "configs/mnist_rpgan.py"' in text and "experiment.train(" in text
  assert (NOTEBOOK.parents[1] / "configs" / "mnist_rpgan.py").exists()


def test_notebook_fails_loudly_when_the_chosen_backend_is_not_jaxs(tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  from nbclient.exceptions import CellExecutionError
  with pytest.raises(CellExecutionError, match="you chose BACKEND='tpu' but JAX runs on 'cpu'"):
    # intro, install, parameters, backend check
    run_notebook("rpgan.ipynb", monkeypatch, tmp_path / "run", tiny=False, num_cells=4,
                 backend="tpu", timeout=300)


def test_notebook_runs_on_tiny_config(shared_data_dir, tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  outputs = run_notebook("rpgan.ipynb", monkeypatch, tmp_path / "run", data_dir=shared_data_dir)
  assert "K=2 projections: epoch 1" in outputs and "single D (k=0): epoch 1" in outputs
  assert "swd_avg" in outputs
  for k in (2, 0):
    assert (tmp_path / "run" / f"k{k}" / "samples" / "latest.png").exists()
