"""The table runner (itgan_jax/table.py, experiments/table.py): aggregation against hand-computed
numbers, the paper's layout, the ensemble against NumPy, resume of unfinished subsets, errors."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from itgan_jax import evaluate, experiment, table
from itgan_jax.data import preprocess
from itgan_jax.data import ssl as ssl_data
from itgan_jax.evaluators import classifier_error
from itgan_jax.train import loop, run_config
from tests.helpers import REPO, load_config


def _config(data_dir=None, labels=20, arg="tiny", **overrides):
  extra = {"data.dir": str(data_dir)} if data_dir else {}
  return load_config("mnist_ssl", f"{arg},labels={labels}",
                     **{"num_devices": 1, "log.progress": False, "log.print_epochs": False,
                        "evals.test_error.max_examples": 2000, **extra, **overrides})


def _cell(root, config, subsets, **kwargs):
  return table.Cell(config=config, subsets=subsets, root=root, name="mnist_ssl_tiny",
                    spec="configs/mnist_ssl.py:tiny,labels=20", **kwargs)


def _fake_run(cell, seed, last_epoch, ema, raw, config=None):
  """A run's config.json and metrics.jsonl (no checkpoints) with the given last-epoch errors."""
  workdir = cell.workdir(seed)
  workdir.mkdir(parents=True)
  run_config.write(workdir, config or table.seed_config(cell.config, seed))
  records = [{"epoch": e, "step": 4 * e, "test_errors_ema": ema + 50 * (last_epoch - e),
              "test_err_ema": (ema + 50 * (last_epoch - e)) / 10000,
              "test_errors_raw": raw, "test_err_raw": raw / 10000}
             for e in range(1, last_epoch + 1)]
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def fake_cell(tmp_path):
  """Subsets 1-3 finished (2 epochs: EMA 100, 110, 130; raw 120, 120, 126), subset 4 at epoch 1."""
  cell = _cell(tmp_path, _config(), subsets=4)
  for seed, ema, raw in ((1, 100, 120), (2, 110, 120), (3, 130, 126)):
    _fake_run(cell, seed, 2, ema, raw)
  _fake_run(cell, 4, 1, 90, 90)
  return cell


def test_status_lists_finished_and_unfinished_subsets(fake_cell):
  subsets = table.status(fake_cell)
  assert [(s.seed, s.epoch, s.finished) for s in subsets] == [
      (1, 2, True), (2, 2, True), (3, 2, True), (4, 1, False)]
  assert subsets[0].workdir == fake_cell.root / "mnist_ssl_tiny_labels20_seed1"


def test_summary_is_mean_and_sample_std_of_the_last_epoch(fake_cell):
  summary = table.summarize(table.status(fake_cell))
  # By hand: EMA 100, 110, 130 -> mean 113.333; squared deviations 177.78 + 11.11 + 277.78 =
  # 466.67, / (3 - 1) = 233.33, sqrt = 15.275. Raw 120, 120, 126 -> 122, sqrt(24 / 2) = 3.4641.
  assert summary["ema"]["errors"]["mean"] == pytest.approx(113.3333, abs=1e-4)
  assert summary["ema"]["errors"]["std"] == pytest.approx(15.2753, abs=1e-4)
  assert summary["ema"]["errors"]["n"] == 3
  assert summary["raw"]["errors"]["mean"] == pytest.approx(122.0)
  assert summary["raw"]["errors"]["std"] == pytest.approx(3.4641, abs=1e-4)
  assert summary["ema"]["err"]["mean"] == pytest.approx(0.01133333, abs=1e-8)


def test_paper_layout_puts_the_papers_numbers_beside_ours(fake_cell):
  result = table.cell_result(fake_cell, table.status(fake_cell), ensembles={
      "ema": {"errors": 99, "err": 0.0099, "members": 3},
      "raw": {"errors": 118, "err": 0.0118, "members": 3}})
  text = table.format_table([result])
  lines = text.splitlines()
  assert lines[0].startswith("MNIST (permutation invariant): test errors of 10,000")
  assert "| model | 20 | 50 | 100 | 200 |" in lines
  i = lines.index("| Our model (paper) | 1677 ± 452 | 221 ± 136 † | 93 ± 6.5 | 90 ± 4.2 |")
  assert lines[i + 1] == ("| Our model: ours, mnist_ssl_tiny, EMA D, the protocol's number | "
                          "113.3 ± 15.3 [3/4] |  |  |  |")
  assert lines[i + 2] == "| Our model: ours, mnist_ssl_tiny, raw D | 122.0 ± 3.5 [3/4] |  |  |  |"
  j = lines.index("| Ensemble of 10 of our models (paper) | 1134 ± 445 † | 142 ± 96 † | "
                  "86 ± 5.6 | 81 ± 4.3 |")
  assert lines[j + 1] == ("| Ensemble: ours, mnist_ssl_tiny, EMA D, the protocol's number | "
                          "99 [3 models] |  |  |  |")
  assert lines[j + 2] == "| Ensemble: ours, mnist_ssl_tiny, raw D | 118 [3 models] |  |  |  |"


def test_prerelease_protocol_reports_the_raw_number_first():
  assert table.protocol_params("configs/mnist_ssl.py:prerelease,labels=100") == "raw"
  assert table.protocol_params("configs/mnist_ssl.py:labels=100") == "ema"
  result = {"dataset": "cifar10", "labels": 4000, "name": "cifar10_ssl", "params": "ema",
            "subsets": 2, "ensemble": {},
            "model": {p: {"errors": table.mean_std([1900, 1800]),
                          "err": table.mean_std([0.19, 0.18])} for p in table.PARAMS}}
  text = table.format_table([result])
  assert "| Our model (paper) | 21.83 ± 2.01 | 19.61 ± 2.09 | 18.63 ± 2.32 | 17.72 ± 1.82 |" in text
  assert "| Our model: ours, cifar10_ssl, EMA D, the protocol's number |  |  | 18.50 ± 0.71 |  |" \
      in text


def test_an_ensemble_of_one_finished_subset_is_named_in_the_singular():
  result = {"dataset": "cifar10", "labels": 4000, "name": "cifar10_ssl", "params": "ema",
            "subsets": 2, "ensemble": {"ema": {"errors": 1900, "err": 0.19, "members": 1}},
            "model": {p: {"errors": table.mean_std([1900]), "err": table.mean_std([0.19])}
                      for p in table.PARAMS}}
  text = table.format_table([result])
  assert "| Our model: ours, cifar10_ssl, EMA D, the protocol's number |  |  | 19.00 [1/2] |  |" in text
  assert "| Ensemble: ours, cifar10_ssl, EMA D, the protocol's number |  |  | 19.00 [1 model] |  |" \
      in text


def test_spec_helpers():
  assert table.with_labels("configs/mnist_ssl.py", 50) == "configs/mnist_ssl.py:labels=50"
  assert (table.with_labels("configs/mnist_ssl.py:prerelease,labels=20", 100)
          == "configs/mnist_ssl.py:prerelease,labels=100")
  assert table.cell_name("configs/mnist_ssl.py:prerelease,labels=100") == "mnist_ssl_prerelease"
  assert table.cell_name("configs/cifar10_ssl.py:labels=4000") == "cifar10_ssl"


def test_train_seeds_parse_subsets_and_ranges_and_refuse_the_rest():
  assert table.parse_seeds("4", 10) == (4,)
  assert table.parse_seeds("4-6,9, 5", 10) == (4, 5, 6, 9)
  assert table.parse_seeds("1-10", 10) == tuple(range(1, 11))
  for bad, message in (("0", "within the cell's subsets 1-10"), ("11", "within"),
                       ("6-4", "within"), ("x", "is not a subset"), ("", "is not a subset"),
                       ("4-", "is not a subset"), ("4,,5", "is not a subset")):
    with pytest.raises(ValueError, match=message):
      table.parse_seeds(bad, 10)


@pytest.fixture
def recorded_training(monkeypatch):
  """Replaces data loading, assembly and the loop: each run the table trains is recorded as
  (seed, workdir) instead."""
  trained = []
  monkeypatch.setattr(experiment, "load_data", lambda data: "dataset")
  monkeypatch.setattr(experiment, "build", lambda config, dataset: config.seed)
  monkeypatch.setattr(loop, "train_and_evaluate",
                      lambda seed, config, workdir, chunk_callback=None:
                      trained.append((seed, workdir)))
  return trained


def test_train_seeds_train_only_the_named_unfinished_subsets(fake_cell, recorded_training):
  cell = _cell(fake_cell.root, fake_cell.config, subsets=6)  # 1-3 finished, 4 at epoch 1
  table.train(cell, seeds=(2, 4, 6))  # 2 is finished: untouched
  assert recorded_training == [(4, str(cell.workdir(4))), (6, str(cell.workdir(6)))]
  recorded_training.clear()
  table.train(cell)
  assert [seed for seed, _ in recorded_training] == [4, 5, 6]


def test_train_seeds_of_a_vmapped_cell_are_all_or_none(tmp_path, recorded_training):
  cell = _cell(tmp_path, _config(), subsets=3, vmap=True)
  with pytest.raises(ValueError, match="vmapped cell trains its 3 subsets as one run"):
    table.train(cell, seeds=(1,))
  table.train(cell, seeds=(1, 2, 3))
  assert recorded_training == [(1, str(cell.vmapped_workdir))]


def test_missing_root_is_a_clear_error(tmp_path):
  cell = _cell(tmp_path / "nowhere", _config(), subsets=2)
  with pytest.raises(FileNotFoundError, match="nowhere does not exist, so there is nothing to "
                     "aggregate; pass --run"):
    table.status(cell)


def test_subset_with_another_config_is_refused(tmp_path):
  cell = _cell(tmp_path, _config(), subsets=2)
  _fake_run(cell, 1, 2, 100, 100)
  other = table.seed_config(cell.config, 2)
  other.optim.lr = 0.001
  _fake_run(cell, 2, 2, 100, 100, config=other)
  with pytest.raises(run_config.ConfigMismatchError,
                     match=r"seed2 was trained with another config than this cell's \(optim.lr: "
                     r"0.001 in the run, 0.003 in the cell\)"):
    table.status(cell)


def test_a_run_longer_than_the_cell_is_a_clear_error(tmp_path):
  cell = _cell(tmp_path, _config(**{"train.num_epochs": 1}), subsets=1)
  _fake_run(cell, 1, 2, 100, 100, config=table.seed_config(_config(), 1))
  with pytest.raises(ValueError, match="has trained 2 epochs, more than the cell's "
                     "train.num_epochs=1; pass --config.train.num_epochs=2"):
    table.status(cell)


# ------------------------------------------------------------------------------------------------
# Real tiny runs: resume and ensemble.

@pytest.fixture(scope="module")
def trained(shared_data_dir, tmp_path_factory):
  """Two subsets trained 1 epoch, then the same cell with 2 epochs (resumed), then once more."""
  root = tmp_path_factory.mktemp("table")
  steps = {1: [], 2: [], 3: []}
  first = _cell(root, _config(shared_data_dir, **{"train.num_epochs": 1}), subsets=2)
  table.train(first, chunk_callback=steps[1].append)
  after_first = {s: (first.workdir(s) / "metrics.jsonl").read_text() for s in (1, 2)}
  cell = _cell(root, _config(shared_data_dir), subsets=2)
  subsets = table.train(cell, chunk_callback=steps[2].append)
  mtimes = {s: os.stat(cell.workdir(s) / "metrics.jsonl").st_mtime_ns for s in (1, 2)}
  table.train(cell, chunk_callback=steps[3].append)
  return cell, subsets, steps, after_first, mtimes


def test_second_call_resumes_unfinished_subsets(trained):
  cell, subsets, steps, after_first, mtimes = trained
  # tiny: 4 steps per epoch in chunks of 2. The first call trains steps 1-4 of both subsets; the
  # second continues each from its epoch-1 checkpoint (steps 6, 8), never from step 0.
  assert steps[1] == [2, 4, 2, 4]
  assert steps[2] == [6, 8, 6, 8]
  assert steps[3] == []  # everything finished: nothing trains, nothing is rewritten
  assert all(s.finished and s.epoch == 2 for s in subsets)
  for seed in (1, 2):
    records = (cell.workdir(seed) / "metrics.jsonl").read_text()
    assert records.startswith(after_first[seed])  # epoch 1's record kept as it was
    assert os.stat(cell.workdir(seed) / "metrics.jsonl").st_mtime_ns == mtimes[seed]
  stored = json.loads((cell.workdir(2) / "config.json").read_text())
  assert stored["seed"] == 2 and stored["data"]["seed_data"] == 2


def test_ensemble_equals_numpy_average_of_probabilities_and_of_log_probabilities(trained):
  cell, subsets, *_ = trained
  got = table.ensemble(cell, subsets, return_probabilities=True)
  probs = {"ema": [], "raw": []}
  log_probs = {"ema": [], "raw": []}
  for s in subsets:
    config, exp, state, step = evaluate.load_run(s.workdir)
    assert step == 8
    n = 2000  # the evaluator's max_examples in _config
    x = preprocess.to_float(exp.dataset.test_x[:n], exp.scale)
    y = exp.dataset.test_y[:n]
    for params in probs:
      logits = np.asarray(jax.jit(exp.variant.classify, static_argnums=(2,))(
          state, x, params == "ema"), np.float64)
      e = np.exp(logits - logits.max(-1, keepdims=True))
      probs[params].append(e / e.sum(-1, keepdims=True))
      log_probs[params].append(np.log(probs[params][-1]))
  for params, members in probs.items():
    mean = np.mean(members, axis=0)
    np.testing.assert_allclose(got[params]["probabilities"], mean, atol=1e-6)
    assert got[params]["errors"] == int(np.sum(np.argmax(mean, -1) != y))
    log_mean = np.mean(log_probs[params], axis=0)  # the geometric rule
    np.testing.assert_allclose(got[params]["log_probabilities"], log_mean, atol=1e-5)
    assert got[params]["errors_log_prob"] == int(np.sum(np.argmax(log_mean, -1) != y))
    assert got[params]["members"] == 2 and got[params]["test_examples"] == n
    assert got[params]["member_errors"] == got[params]["logged_errors"]
    assert got[params]["member_errors"] == [int(np.sum(np.argmax(p, -1) != y)) for p in members]


def test_confusion_of_a_subset_agrees_with_its_logged_errors(trained, capsys):
  """experiments/confusion.py on a trained subset: the matrices' off-diagonal counts are the
  test errors the run logged at its last epoch (the evaluator's count, computed apart)."""
  confusion = _load_confusion()
  cell, *_ = trained
  workdir = cell.workdir(2)
  result = confusion.confusion(workdir)
  assert result["epoch"] == 2 and result["seed"] is None
  logged = confusion.logged_errors(workdir, 2, None)
  for params in ("ema", "raw"):
    m = result[params]
    assert m.shape == (10, 10) and m.sum() == 2000  # the evaluator's max_examples in _config
    assert m.sum() - m.trace() == logged[params]
  assert confusion.main([str(workdir), "--top=3"]) == 0
  out = capsys.readouterr()
  assert f"ema parameters: {logged['ema']} test errors of 2000" in out.out
  assert "warning" not in out.err
  assert confusion.main([str(workdir), "--member=0"]) == 1
  assert "single-seed run" in capsys.readouterr().err


def _load_confusion():
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("confusion", REPO / "experiments" / "confusion.py")
  confusion = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(confusion)
  return confusion


def test_confusion_images_show_the_subsets_labeled_examples_and_misread_test_images(trained,
                                                                                  tmp_path):
  """--images: labeled.png is subset 2's labeled examples (seed_data 2, class by class, one row a
  class); confused_*.png holds one captioned grid per drawn confusion."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  confusion = _load_confusion()
  cell, *_ = trained
  result = confusion.confusion(cell.workdir(2))
  config, exp, _, _ = evaluate.load_run(cell.workdir(2))
  per_class = config.data.num_labeled // 10
  want = ssl_data.select_labeled(exp.dataset.train_y, per_class, 2, 10)
  np.testing.assert_array_equal(exp.dataset.train_y[want], np.repeat(np.arange(10), per_class))
  np.testing.assert_array_equal(result["labeled_x"], exp.dataset.train_x[want])
  assert confusion.main([str(cell.workdir(2)), "--top=2", f"--images={tmp_path / 'img'}"]) == 0
  labeled = np.asarray(Image.open(tmp_path / "img" / "labeled.png"))
  assert labeled.shape == (10 * 29 - 1, per_class * 29 - 1)  # 28-pixel digits, 1-pixel gaps
  assert (tmp_path / "img" / "confused_ema.png").exists()


def test_confusion_images_draw_each_confusions_misread_images(tmp_path):
  """write_images on a made-up result: test images 0, 1 (true 0 read as 1) and 3 (true 1 read as
  0) are drawn in two captioned rows, largest confusion first; no row for an empty confusion."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  confusion = _load_confusion()
  test_x = np.zeros((5, 4, 4, 1), np.uint8)
  test_x[[0, 1, 3], ..., 0] = np.array([50, 100, 200])[:, None, None]
  y, predicted = np.array([0, 0, 1, 1, 2]), np.array([1, 1, 1, 0, 2])
  matrix = classifier_error.confusion_matrix(y, predicted, 3)
  result = {"ema": matrix, "raw": np.diag(np.bincount(y, minlength=3)), "y": y, "test_x": test_x,
            "predicted": {"ema": predicted, "raw": y}, "labeled_x": np.zeros((3, 4, 4, 1), np.uint8)}
  assert confusion.top_confusions(matrix, 5) == [(2, 0, 1), (1, 1, 0)]
  paths = confusion.write_images(result, tmp_path, top=5)
  assert [p.name for p in paths] == ["labeled.png", "confused_ema.png"]  # raw: no errors
  image = np.asarray(Image.open(tmp_path / "confused_ema.png").convert("L"))
  caption, gap = 16, 6
  assert image.shape == (2 * (caption + 4) + gap, 2 * 5 - 1)
  first = image[caption:caption + 4]  # row 1: test images 0 and 1, a 1-pixel white gap
  assert (first[:, :4] == 50).all() and (first[:, 4] == 255).all() and (first[:, 5:] == 100).all()
  second = image[2 * caption + 4 + gap:]  # row 2: test image 3, then the white canvas
  assert (second[:, :4] == 200).all() and (second[:, 4:] == 255).all()


def test_confusion_indices_name_each_confusions_misread_test_images():
  """--indices on a made-up result: test images 1 and 4 are true 0 read as 2, image 2 is true 1
  read as 0; each listed confusion prints its indices in test-set order, none without the flag."""
  confusion = _load_confusion()
  y, predicted = np.array([0, 0, 1, 1, 0, 2]), np.array([0, 2, 0, 1, 2, 2])
  matrix = classifier_error.confusion_matrix(y, predicted, 3)
  result = {"ema": matrix, "raw": matrix, "y": y, "predicted": {"ema": predicted, "raw": predicted},
            "step": 10, "epoch": 1, "steps_per_epoch": 10}
  got = confusion.confused_indices(result, "ema", top=5)
  assert [(i, j, m.tolist()) for i, j, m in got] == [(0, 2, [1, 4]), (1, 0, [2])]
  report = confusion.format_report(result, top=1, indices=True)
  assert report.count("test indices of 0->2: 1 4") == 2  # EMA and raw
  assert "1->0" not in report.split("most frequent")[1].split("raw parameters")[0]  # --top=1
  assert "test indices" not in confusion.format_report(result, top=5)


# ------------------------------------------------------------------------------------------------
# The command line.

def _cli(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, str(REPO / "experiments" / "table.py"), *args],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_cli_aggregates_and_prints_the_table(fake_cell, tmp_path):
  out = _cli("--config=configs/mnist_ssl.py:tiny", "--labels=20", "--subsets=4",
             f"--workdir_root={fake_cell.root}", "--noensemble",
             "--config.evals.test_error.max_examples=2000", "--config.num_devices=1",
             "--config.log.progress=False", "--config.log.print_epochs=False",
             f"--markdown={tmp_path / 'table.md'}")
  assert out.returncode == 0, out.stderr
  assert "subset 4: unfinished at epoch 1/2" in out.stdout
  assert "113.3 ± 15.3 [3/4]" in out.stdout
  summary = json.loads((fake_cell.root / "table_mnist_ssl_tiny_labels20.json").read_text())
  assert summary["finished"] == [1, 2, 3] and summary["unfinished"] == {"4": 1}
  assert "| Our model (paper) | 1677 ± 452" in (tmp_path / "table.md").read_text()


def test_cli_errors_are_one_line(tmp_path):
  out = _cli("--config=configs/mnist_ssl.py:tiny", "--labels=20",
             f"--workdir_root={tmp_path / 'missing'}")
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith(
      f"error: --workdir_root={tmp_path / 'missing'} does not exist")
  out = _cli("--config=configs/mnist_ssl.py:tiny", f"--workdir_root={tmp_path}",
             "--config.train.num_epochs=x")
  assert out.returncode == 2 and "error:" in out.stderr
  out = _cli("--config=configs/mnist_ssl.py:tiny", "--labels=20", "--subsets=4",
             f"--workdir_root={tmp_path}", "--run", "--train_seeds=5")
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      "error: --train_seeds='5': '5' is not within the cell's subsets 1-4 (--subsets=4)")


def test_docstring_commands_name_existing_files():
  doc = (REPO / "experiments" / "table.py").read_text()
  for path in ("configs/mnist_ssl.py",):
    assert path in doc and (REPO / path).exists()
  assert pathlib.Path(REPO / "itgan_jax" / "table.py").exists()


def test_runs_stored_before_newer_keys_existed_are_the_cells_runs(tmp_path):
  """A run whose stored config predates config.precision and train.num_seeds (e.g. the MNIST
  runs of earlier sessions) belongs to the cell as a resume would accept it; a real difference in
  a computation key is still refused."""
  config = load_config("mnist_ssl", "prerelease,labels=100")
  stored = run_config.as_plain(config)
  del stored["precision"], stored["train"]["num_seeds"], stored["checkpoint"]["every_steps"]
  (tmp_path / run_config.FILENAME).write_text(json.dumps(stored))
  table.check_run_config(tmp_path, config)
  assert run_config.check_resume(tmp_path, config) == {}
  stored["optim"]["lr"] = 0.003
  (tmp_path / run_config.FILENAME).write_text(json.dumps(stored))
  with pytest.raises(run_config.ConfigMismatchError, match="optim.lr"):
    table.check_run_config(tmp_path, config)


def test_confusion_compares_logged_errors_only_at_an_epoch_end():
  """A checkpoint at an epoch's end is compared with that epoch's logged errors (a warning per
  differing parameter set); a mid-epoch one (a run stopped by SIGTERM) gets one note instead."""
  confusion = _load_confusion()
  m = np.diag([5, 5]) + np.array([[0, 2], [1, 0]])  # 3 errors
  result = {"ema": m, "raw": m, "epoch": 3, "steps_per_epoch": 10}
  assert confusion.logged_mismatches(dict(result, step=30), {"ema": 3, "raw": 3}) == []
  assert confusion.logged_mismatches(dict(result, step=30), {"ema": 3, "raw": 4}) == [
      "warning: 3 raw errors here, 4 logged at epoch 3"]
  assert confusion.logged_mismatches(dict(result, step=30), {}) == []  # no record
  (note,) = confusion.logged_mismatches(dict(result, step=34), {"ema": 9, "raw": 9})
  assert note.startswith("note: the checkpoint (step 34) is 4 steps into epoch 4,")
