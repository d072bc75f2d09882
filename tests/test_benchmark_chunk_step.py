"""benchmarks/chunk_step.py: a smoke run of the timed chunk, one seed and two vmapped seeds."""

from __future__ import annotations

import re
import sys

from tests.helpers import fake_dataset, load_script, serve_datasets


def test_num_seeds_times_each_program_and_its_throughput_against_one_seed(monkeypatch, capsys):
  serve_datasets(monkeypatch, fake_dataset("mnist", (28, 28, 1), 1000, 200))
  bench = load_script("benchmarks/chunk_step.py")
  monkeypatch.setattr(sys, "argv", ["chunk_step.py", "--config=configs/mnist_ssl.py:tiny",
                                    "--steps=2", "--repeats=1", "--num_seeds", "1", "2"])
  bench.main()
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("configs/mnist_ssl.py:tiny: ") and "batch 100" in lines[0]
  one = re.fullmatch(r"seeds 1: .*, ([0-9.]+) s per iteration \(best of 1 chunks of 2\)", lines[1])
  two = re.fullmatch(r"seeds 2: .*, ([0-9.]+) s per iteration \(best of 1 chunks of 2\), "
                     r"throughput ([0-9.]+)x of 2 separate runs", lines[2])
  assert one and two, lines
  t1, t2, ratio = float(one[1]), float(two[1]), float(two[2])
  assert t1 > 0 and t2 > 0
  assert abs(ratio - 2 * t1 / t2) <= 0.01 + 1e-3 * ratio  # printed to 2 decimals from unrounded times
