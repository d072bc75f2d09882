"""Launches the processes of one multi-process JAX job on this machine, for tests.

`run_processes` starts one subprocess per argv, watches them, and kills all of them (SIGKILL) as
soon as one fails, the hard timeout passes, or a `kill_when` condition holds (to test a resume after
all processes die). SIGKILL, because a process inside a started `jax.distributed` job ignores
SIGTERM (JAX's preemption service catches it) and a process whose peer failed can wait minutes in
a collective or at the shutdown barrier before it exits by itself.

`worker_env` builds the environment of CPU workers: JAX on CPU with N devices per process (the
pytest process's `XLA_FLAGS` from conftest.py, 8 devices, is dropped) and the repository on
`PYTHONPATH`. Worker scripts should end with `os._exit` on an exception (see
tests/multiprocess_worker.py) so that a failing process exits at once instead of waiting at JAX's
shutdown barrier for peers that wait for it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Mapping, Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
  """A TCP port the OS reports free on 127.0.0.1 (for a coordinator started right after)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def worker_env(num_cpu_devices: int = 2, extra: Mapping[str, str] | None = None) -> dict[str, str]:
  """The environment for CPU worker processes of a multi-process test.

  Args:
    num_cpu_devices: CPU devices per process (`JAX_NUM_CPU_DEVICES`).
    extra: more variables, applied last.

  Returns:
    A copy of `os.environ` without `XLA_FLAGS`'s host device count and without JAX distributed /
    cluster-launcher variables, with `JAX_PLATFORMS=cpu`, `JAX_NUM_CPU_DEVICES` and the repository
    first on `PYTHONPATH`.
  """
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_",
                              "OMPI_", "TPU_WORKER", "TPU_PROCESS"))}
  flags = [f for f in env.pop("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  if flags:
    env["XLA_FLAGS"] = " ".join(flags)
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_NUM_CPU_DEVICES"] = str(num_cpu_devices)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
  env["PYTHONUNBUFFERED"] = "1"
  env.update(extra or {})
  return env


@dataclasses.dataclass
class ProcessResult:
  """One process's exit status (negative: killed by that signal) and its output."""
  returncode: int
  stdout: str
  stderr: str


@dataclasses.dataclass
class RunResult:
  """The processes' results, why the run ended and its wall time."""
  results: list[ProcessResult]
  reason: str  # "exited" (all ended by themselves), "failed", "timeout" or "killed" (kill_when)
  wall_s: float

  def report(self, tail: int = 6000) -> str:
    """Every process's exit status and the tail of its stdout and stderr, for failure messages."""
    lines = [f"multi-process run ended: {self.reason} after {self.wall_s:.1f} s"]
    for i, r in enumerate(self.results):
      lines.append(f"----- process {i}: returncode {r.returncode} -----")
      if r.stdout.strip():
        lines.append(f"stdout (tail):\n{r.stdout[-tail:]}")
      if r.stderr.strip():
        lines.append(f"stderr (tail):\n{r.stderr[-tail:]}")
    return "\n".join(lines)


class MultiprocessError(AssertionError):
  """A multi-process run did not end with every process exiting 0."""


def run_processes(argv_per_process: Sequence[Sequence[str]], env: Mapping[str, str] | None = None,
                  timeout: float = 60.0, *, kill_when: Callable[[], bool] | None = None,
                  check: bool = True, cwd: str | os.PathLike | None = None,
                  poll_s: float = 0.05) -> RunResult:
  """Runs one subprocess per argv concurrently; kills all of them on the first failure.

  Output goes to temporary files (no pipe can fill and block a chatty process). The run ends when
  every process has exited, or, killing the remaining ones with SIGKILL, when one exits non-zero,
  when `timeout` seconds have passed, or when `kill_when()` returns True (polled every `poll_s`).

  Args:
    argv_per_process: the command of each process (e.g. `[sys.executable, script, ...]`).
    env: their environment (e.g. `worker_env()`); `os.environ` when None.
    timeout: hard wall-clock limit in seconds for the whole run.
    kill_when: a condition that ends the run by killing every process (a simulated crash of all of
      them, e.g. once a checkpoint exists); the run then counts as a success for `check`.
    check: raise `MultiprocessError` (with every process's output) unless the run ended with all
      processes exiting 0, or by `kill_when`.
    cwd: working directory of the processes (the repository root by default).
    poll_s: polling interval in seconds.

  Returns:
    A `RunResult` with each process's return code, stdout and stderr, in argv order.

  Raises:
    MultiprocessError: `check` is set and a process failed or the timeout passed.
  """
  start = time.monotonic()
  procs, files = [], []
  reason = "exited"
  try:
    for argv in argv_per_process:
      out = tempfile.TemporaryFile(mode="w+b")
      err = tempfile.TemporaryFile(mode="w+b")
      files.append((out, err))
      procs.append(subprocess.Popen(list(argv), env=dict(env) if env is not None else None,
                                    cwd=str(cwd or REPO_ROOT), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL))
    while True:
      codes = [p.poll() for p in procs]
      if all(c is not None for c in codes):
        reason = "exited" if all(c == 0 for c in codes) else "failed"
        break
      if any(c not in (None, 0) for c in codes):
        reason = "failed"
        break
      if kill_when is not None and kill_when():
        reason = "killed"
        break
      if time.monotonic() - start > timeout:
        reason = "timeout"
        break
      time.sleep(poll_s)
  finally:
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    for p in procs:
      p.wait()
  results = []
  for p, (out, err) in zip(procs, files):
    texts = []
    for f in (out, err):
      f.seek(0)
      texts.append(f.read().decode("utf-8", errors="replace"))
      f.close()
    results.append(ProcessResult(p.returncode, *texts))
  run = RunResult(results, reason, time.monotonic() - start)
  if check and reason not in ("exited", "killed"):
    raise MultiprocessError(run.report())
  return run


def python_argv(script: str | os.PathLike, *args: str) -> list[str]:
  """`[sys.executable, script, *args]`: a command for `run_processes` in this interpreter."""
  return [sys.executable, str(script), *args]
