"""Two CPU processes on 127.0.0.1 (2 devices each, gloo collectives, host feeder) train the tiny
MNIST config to the parameters of one process with 4 devices (device feeder)."""

from __future__ import annotations

import numpy as np

from tests import multiprocess

WORKER = multiprocess.REPO_ROOT / "tests" / "multiprocess_train_worker.py"


def test_two_processes_equal_one_process_with_four_devices(shared_data_dir, tmp_path):
  port = multiprocess.free_port()
  two = [multiprocess.python_argv(WORKER, str(tmp_path / "two"), str(shared_data_dir),
                                  str(tmp_path / "two.npz"), f"127.0.0.1:{port}", "2", str(i))
         for i in range(2)]
  multiprocess.run_processes(two, env=multiprocess.worker_env(2), timeout=240)
  multiprocess.run_processes(
      [multiprocess.python_argv(WORKER, str(tmp_path / "one"), str(shared_data_dir),
                                str(tmp_path / "one.npz"))],
      env=multiprocess.worker_env(4), timeout=240)
  with np.load(tmp_path / "two.npz") as a, np.load(tmp_path / "one.npz") as b:
    assert int(a["devices"]) == int(b["devices"]) == 4
    assert int(a["step"]) == int(b["step"]) == 8
    n = len([k for k in a.files if k.startswith("arr_")])
    for i in range(n):
      x, y = a[f"arr_{i}"], b[f"arr_{i}"]
      # The cross-device sums run in another order, and Adam's first steps (about lr * sign(g))
      # move near-zero-gradient entries by ~lr either way (see test_data_parallel.py); a wrong
      # batch or per-process statistics would differ by the whole movement (8 steps x 0.003).
      assert np.mean(np.abs(x - y)) < 0.1 * 8 * 0.003, i
  # Only process 0 wrote the logs.
  assert (tmp_path / "two" / "metrics.jsonl").read_text().count("\n") == 2
