"""The prepared lent-GPU session (experiments/device/h200_session.sh) calls the benchmarks and the
table runner with flags they define: its plumbing runs here with a Python that only records its
arguments (the real dry run on CPU is in the script's header)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "device" / "h200_session.sh"


def _defined_flags(path: pathlib.Path) -> set[str]:
  text = path.read_text()
  absl = re.findall(r'DEFINE_\w+\(\s*"(\w+)"', text)
  argparse = re.findall(r'add_argument\(\s*"--(\w+)"', text)
  return set(absl) | set(argparse) | {"config"}


def _run(tmp_path, data):
  log = tmp_path / "calls.txt"
  fake = tmp_path / "python"
  fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {log}\n')
  fake.chmod(0o755)
  out = tmp_path / "out"
  out.mkdir()
  env = dict(os.environ, OUT=str(out), PYTHON=str(fake), WORK=str(tmp_path / "work"),
             DATA=str(data))
  result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
  return result, log.read_text().splitlines() if log.exists() else [], out


def test_every_call_uses_defined_flags(tmp_path):
  (tmp_path / "data" / "mnist").mkdir(parents=True)
  (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
  result, calls, out = _run(tmp_path, tmp_path / "data")
  assert result.returncode == 0, result.stderr
  scripts = [c.split()[0] for c in calls if c.split() and c.split()[0].endswith(".py")]
  assert scripts == ["benchmarks/mnist_step.py", "benchmarks/cifar_step.py",
                     "experiments/table.py", "experiments/table.py"], calls
  table_calls = [c for c in calls if c.startswith("experiments/table.py")]
  assert "--run" in table_calls[0].split() and "--run" not in table_calls[1].split()
  for call in calls:
    if not call.split() or not call.split()[0].endswith(".py"):
      continue
    defined = _defined_flags(REPO / call.split()[0])
    for arg in call.split()[1:]:
      if arg.startswith("--") and not arg.startswith("--config."):
        assert arg[2:].split("=")[0] in defined, (call.split()[0], arg)
  assert (out / "env.txt").exists() and (out / "bench.txt").exists()
  assert (out / "cell.log").exists()


def test_missing_data_is_a_clear_error(tmp_path):
  result, calls, _ = _run(tmp_path, tmp_path / "nowhere")
  assert result.returncode == 1
  assert "prepare.sh" in result.stderr and "nowhere" in result.stderr
  assert not [c for c in calls if ".py" in c]  # stops before any benchmark or training
