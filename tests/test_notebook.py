"""Executes notebooks/mnist_ssl.ipynb end to end on a tiny config."""

from __future__ import annotations

import pytest

from tests.helpers import run_notebook


def test_notebook_runs_on_tiny_config(shared_data_dir, tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  outputs = run_notebook("mnist_ssl.ipynb", monkeypatch, tmp_path / "run",
                         data_dir=shared_data_dir)
  assert "test errors with EMA parameters" in outputs
  assert (tmp_path / "run" / "samples" / "latest.png").exists()


def test_notebook_fails_loudly_when_the_chosen_backend_is_not_jaxs(tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  from nbclient.exceptions import CellExecutionError
  with pytest.raises(CellExecutionError, match="you chose BACKEND='tpu' but JAX runs on 'cpu'"):
    # install, parameters, backend check
    run_notebook("mnist_ssl.ipynb", monkeypatch, tmp_path / "run", tiny=False, num_cells=4,
                 backend="tpu", timeout=300)
