"""Tiny MNIST SSL runs equal the numbers recorded from the code before the engine refactor.

`tests/data/engine_reference.json` was written by `tests/reference/record_engine_reference.py`
at commit 204966c (before issue 12's refactor) under the suite's 8 fake devices. On a CPU of the
recording model the comparison is exact (bit for bit); elsewhere XLA's kernels may round
differently, so losses must agree to 1e-3 and test error counts within 1% of the test set.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from itgan_jax import experiment
from tests.reference import record_engine_reference as recorder

REFERENCE = json.loads((pathlib.Path(__file__).parent / "data" / "engine_reference.json")
                       .read_text())


@pytest.mark.parametrize("name", sorted(recorder.RUNS))
def test_tiny_ssl_run_reproduces_the_recorded_numbers(name, shared_data_dir, tmp_path):
  experiment.train(recorder.config_for(name, str(shared_data_dir)), str(tmp_path))
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  got = [{k: r[k] for k in recorder.DETERMINISTIC_KEYS if k in r} for r in records]
  want = REFERENCE["runs"][name]
  if recorder.cpu_model() == REFERENCE["cpu"]:
    assert got == want
  else:
    assert [sorted(r) for r in got] == [sorted(r) for r in want]
    for g, w in zip(got, want):
      for key, value in w.items():
        tol = 100 if key.startswith("test_errors") else 1e-3 * max(1.0, abs(value))
        assert abs(g[key] - value) <= tol, (key, g[key], value)
