"""notebooks/rpgan.ipynb: its code parses, a wrong backend fails loudly, and (slow) it runs end to
end on the tiny MNIST config (both runs: K projections and the single-D baseline)."""

from __future__ import annotations

import ast
import pathlib

import nbformat
import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "rpgan.ipynb"


def _client(nb):
  from nbclient import NotebookClient  # pylint: disable=import-outside-toplevel
  return NotebookClient(nb, timeout=900, kernel_name="python3",
                        resources={"metadata": {"path": str(NOTEBOOK.parent)}})


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
  monkeypatch.setenv("ITGAN_NOTEBOOK_BACKEND", "tpu")
  monkeypatch.setenv("ITGAN_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nb.cells = nb.cells[:4]   # intro, install, parameters, backend check
  with pytest.raises(CellExecutionError, match="you chose BACKEND='tpu' but JAX runs on 'cpu'"):
    _client(nb).execute()


@pytest.mark.slow
def test_notebook_runs_on_tiny_config(shared_data_dir, tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  monkeypatch.setenv("ITGAN_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("ITGAN_DATA_DIR", str(shared_data_dir))
  monkeypatch.setenv("ITGAN_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  _client(nb).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert "K=2 projections: epoch 2" in outputs and "single D (k=0): epoch 2" in outputs
  assert "swd_avg" in outputs
  for k in (2, 0):
    assert (tmp_path / "run" / f"k{k}" / "samples" / "latest.png").exists()
