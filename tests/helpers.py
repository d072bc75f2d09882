"""Shared test helpers."""

from __future__ import annotations

import pathlib

import ml_collections
import numpy as np

from itgan_jax.config_args import load_config_file

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None, **overrides) -> ml_collections.ConfigDict:
  """Loads `configs/<name>.py:get_config(arg)` and applies dotted overrides ('train.num_epochs')."""
  spec = str(REPO / "configs" / f"{name}.py") + (f":{arg}" if arg else "")
  return load_config_file(spec, **overrides)


def fake_dataset(name: str, image_shape: tuple[int, int, int], n_train: int, n_test: int):
  """A uint8 random-image `ArrayDataset` with 10 balanced classes (no files needed)."""
  from itgan_jax.data.base import ArrayDataset  # pylint: disable=import-outside-toplevel
  rng = np.random.RandomState(0)
  return ArrayDataset(
      name=name, train_x=rng.randint(0, 256, (n_train,) + image_shape).astype(np.uint8),
      train_y=np.arange(n_train, dtype=np.int32) % 10,
      test_x=rng.randint(0, 256, (n_test,) + image_shape).astype(np.uint8),
      test_y=np.arange(n_test, dtype=np.int32) % 10, num_classes=10)


def serve_datasets(monkeypatch, *datasets, default=None) -> None:
  """Makes `experiment.build` load the given in-memory datasets (by their `name`) instead of
  reading files; names not among them get `default` (with one dataset and no default: that one)."""
  from itgan_jax import experiment  # pylint: disable=import-outside-toplevel
  by_name = {d.name: d for d in datasets}
  if default is None and len(datasets) == 1:
    default = datasets[0]

  def load(name, **kwargs):
    if name not in by_name and default is None:
      raise KeyError(f"the test serves datasets {sorted(by_name)}, not {name!r}")
    return by_name.get(name, default)
  monkeypatch.setattr(experiment.datasets_lib, "load_dataset", load)


def svhn_pattern(n: int, offset: int = 0) -> np.ndarray:
  """Generated SVHN images in the .mat layout (32, 32, 3, n): X[h, w, c, i] = (i + offset) + 7h +
  3w + 50c (mod 256), so rows, columns, channels and images are all distinguishable."""
  h, w, c, i = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), np.arange(n) + offset,
                           indexing="ij")
  return ((i + 7 * h + 3 * w + 50 * c) % 256).astype(np.uint8)


def write_svhn_mats(directory: pathlib.Path, n_train: int = 30, n_test: int = 20) -> dict:
  """Small `train_32x32.mat` / `test_32x32.mat` files (MATLAB v5, scipy.io.savemat) with the
  original layout: X uint8 (32, 32, 3, N), y uint8 (N, 1) in 1..10 (10 = digit 0), y_i = i % 10 + 1
  for train and (i + 3) % 10 + 1 for test. Returns {file name: path}."""
  import scipy.io  # pylint: disable=import-outside-toplevel
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  paths = {}
  for name, n, offset, shift in (("train_32x32.mat", n_train, 0, 0),
                                 ("test_32x32.mat", n_test, 100, 3)):
    y = ((np.arange(n) + shift) % 10 + 1).astype(np.uint8)[:, None]
    scipy.io.savemat(directory / name, {"X": svhn_pattern(n, offset), "y": y})
    paths[name] = directory / name
  return paths


def run_notebook(name: str, monkeypatch, workdir: pathlib.Path, *, data_dir=None,
                 tiny: bool = True, num_cells: int | None = None, backend: str | None = None,
                 timeout: int = 900) -> str:
  """Executes `notebooks/<name>` (its first `num_cells` cells, or all) with the notebooks' test
  switches (ITGAN_NOTEBOOK_TINY / _WORKDIR / _BACKEND, ITGAN_DATA_DIR, a headless matplotlib)
  and returns the text of every code cell's output. A failing cell raises nbclient's
  CellExecutionError."""
  import nbformat  # pylint: disable=import-outside-toplevel
  from nbclient import NotebookClient  # pylint: disable=import-outside-toplevel
  path = REPO / "notebooks" / name
  monkeypatch.setenv("ITGAN_NOTEBOOK_TINY", "1" if tiny else "0")
  monkeypatch.setenv("ITGAN_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  if data_dir is not None:
    monkeypatch.setenv("ITGAN_DATA_DIR", str(data_dir))
  if backend is not None:
    monkeypatch.setenv("ITGAN_NOTEBOOK_BACKEND", backend)
  nb = nbformat.read(path, as_version=4)
  if num_cells is not None:
    nb.cells = nb.cells[:num_cells]
  NotebookClient(nb, timeout=timeout, kernel_name="python3",
                 resources={"metadata": {"path": str(path.parent)}}).execute()
  return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))


def load_script(relative_path: str):
  """A repository script (e.g. 'benchmarks/cifar_step.py') imported as a module, for tests of
  its functions (the scripts are not a package)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  path = REPO / relative_path
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def record_saved_shardings(monkeypatch) -> list:
  """Patches `Checkpointer.save` to record (step, shardings of every state leaf) of each state
  the loop saves: the placement it trains with, seen before the checkpoint (a restore would
  place it anew). Returns the list it appends to."""
  import jax  # pylint: disable=import-outside-toplevel
  from itgan_jax.train.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  saved, save = [], Checkpointer.save

  def record(self, step, state, meta):
    saved.append((step, jax.tree.map(lambda x: x.sharding, state)))
    return save(self, step, state, meta)
  monkeypatch.setattr(Checkpointer, "save", record)
  return saved
