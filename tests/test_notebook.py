"""Executes notebooks/mnist_ssl.ipynb end to end on a tiny config."""

from __future__ import annotations

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "mnist_ssl.ipynb"


def test_notebook_runs_on_tiny_config(shared_data_dir, tmp_path, monkeypatch):
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
  assert "test errors with EMA parameters" in outputs
  assert (tmp_path / "run" / "samples" / "latest.png").exists()


def test_notebook_fails_loudly_when_the_chosen_backend_is_not_jaxs(tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  from nbclient.exceptions import CellExecutionError
  monkeypatch.setenv("ITGAN_NOTEBOOK_BACKEND", "tpu")
  monkeypatch.setenv("ITGAN_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nb.cells = nb.cells[:4]   # install, parameters, backend check
  with pytest.raises(CellExecutionError, match="you chose BACKEND='tpu' but JAX runs on 'cpu'"):
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
