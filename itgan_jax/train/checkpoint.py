"""Atomic, resumable checkpoints of the whole training state (orbax CheckpointManager).

A checkpoint holds one pytree (`state`: parameters, optimizer states, EMA, step) and one JSON
document (`meta`: the loop's host-side bookkeeping such as partial-epoch metric sums and the config).
orbax writes each step into a temporary directory and renames it when complete, so a crash or kill
during a save leaves the previous checkpoint intact; a rerun of the same command restores the newest
complete step. A newest step that cannot be read (truncated or garbage files, a missing data
directory) is set aside, never deleted, when an older step restores (`set_aside`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import sys
import tempfile
import traceback
from typing import Any

import jax
import orbax.checkpoint as ocp


class _OrphanedRestoreTasks(logging.Filter):
  """Drops asyncio's 'Task exception was never retrieved' reports of orbax/TensorStore tasks: a
  failing restore leaves sibling tasks whose errors (a TensorStore spec dump each) asyncio logs
  when they are garbage-collected, after the cause was already reported as a CheckpointError."""

  def filter(self, record: logging.LogRecord) -> bool:
    if not str(record.msg).startswith("Task exception was never retrieved"):
      return True
    text = record.getMessage()
    if record.exc_info:
      text += "".join(traceback.format_exception(*record.exc_info))
    return "orbax" not in text and "tensorstore" not in text


logging.getLogger("asyncio").addFilter(_OrphanedRestoreTasks())


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored; `reason` is a one-line cause."""

  def __init__(self, message: str, reason: str = ""):
    super().__init__(message)
    self.reason = reason or message


def short_reason(error: BaseException, limit: int = 240) -> str:
  """The first line of an exception, cut to `limit` characters (orbax errors can dump specs)."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else ""
  text = f"{type(error).__name__}: {text}"
  return text if len(text) <= limit else text[:limit - 3] + "..."


_CLOSED_LOOP_LINES = (
    "Traceback (most recent call last):",
    "  File \"ASYNCIO/base_events.py\", line 806, in call_soon_threadsafe",
    "    self._check_closed()",
    "  File \"ASYNCIO/base_events.py\", line 519, in _check_closed",
    "    raise RuntimeError('Event loop is closed')",
    "RuntimeError: Event loop is closed")


_NOISE_STARTS = re.compile(r"(?=Traceback \(most recent call last\):|  File \"ASYNCIO|    self\._check"
                           r"|    raise RuntimeError|RuntimeError: Event loop)")


def drop_closed_loop_tracebacks(text: str) -> str:
  """`text` without the 'Event loop is closed' tracebacks of asyncio's `call_soon_threadsafe`:
  whole, or cut into pieces where two threads printed at once (a line that is part of one of
  their lines). A 'Traceback' header is dropped only when the noise follows it; every other line
  is kept."""
  def normal(line):
    return re.sub(r'"[^"]*asyncio/base_events\.py"', '"ASYNCIO/base_events.py"', line.rstrip("\n"))

  def noise(line):  # every piece of the line (pieces start where a noise line starts) is noise
    pieces = [p for p in _NOISE_STARTS.split(normal(line)) if p.strip()]
    return bool(pieces) and any(p not in _CLOSED_LOOP_LINES[0] for p in pieces) and all(
        len(p.strip()) >= 4 and any(p in n for n in _CLOSED_LOOP_LINES) for p in pieces)

  lines = text.splitlines(keepends=True)
  out, dropped = [], False
  for i, line in enumerate(lines):
    if normal(line).strip() and normal(line) in _CLOSED_LOOP_LINES[0]:
      following = next((l for l in lines[i + 1:] if l.strip()), "")
      # A real traceback goes on with a '  File' line; an orphaned header lost its body to the
      # interleaving of two threads' output.
      if noise(following) or not following.startswith("  File "):
        dropped = True
        continue
    elif noise(line) or "Event loop is closed" in line:
      dropped = True
      continue
    out.append(line)
  if dropped:  # the blank lines that interleaved pieces leave behind
    out = [line for line in out if line.strip()]
  return "".join(out)


@contextlib.contextmanager
def quiet_closed_event_loop():
  """While a failing orbax restore unwinds, TensorStore's pending callbacks hit orbax's closed
  asyncio loop and each has its 'RuntimeError: Event loop is closed' traceback printed from
  native code (hundreds of lines that hid the cause). Standard error is collected at the file
  descriptor level meanwhile and written back without those tracebacks."""
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError, AttributeError):  # no real stderr (some notebooks): as it is
    yield
    return
  with tempfile.TemporaryFile() as collected:
    os.dup2(collected.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      collected.seek(0)
      rest = drop_closed_loop_tracebacks(collected.read().decode("utf-8", errors="replace"))
      if rest:
        sys.stderr.write(rest)
        sys.stderr.flush()


class Checkpointer:
  """Saves and restores `(state, meta)` under `<workdir>/checkpoints/<step>`."""

  def __init__(self, workdir: str | pathlib.Path, max_to_keep: int = 2, read_only: bool = False):
    """`read_only=True` opens a run's checkpoints without creating, cleaning or writing anything
    (safe on a run that is still training: evaluation)."""
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    if read_only:
      if not self.directory.is_dir():
        raise CheckpointError(f"no checkpoints directory in {pathlib.Path(workdir)}")
      options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                             cleanup_tmp_directories=False,
                                             enable_async_checkpointing=False)
    else:
      options = ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True,
          cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def steps(self) -> list[int]:
    """The complete steps on disk, newest first."""
    return sorted(self._manager.all_steps(), reverse=True)

  def reload(self) -> None:
    """Re-reads which steps exist (after another process moved one aside)."""
    self._manager.reload()

  def set_aside(self, step: int) -> pathlib.Path:
    """Moves step `step`'s directory to `<workdir>/unreadable_checkpoints/` (kept for
    inspection, never deleted) and forgets it; returns where it went."""
    target_dir = self.directory.parent / "unreadable_checkpoints"
    target_dir.mkdir(exist_ok=True)
    target, n = target_dir / str(step), 1
    while target.exists():
      target, n = target_dir / f"{step}.{n}", n + 1
    (self.directory / str(step)).rename(target)
    self._manager.reload()
    return target

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts an asynchronous save of `state` (a pytree) and `meta` (JSON) at `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def _step(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint found in {self.directory}")
    return step

  def restore_meta(self, step: int | None = None) -> dict:
    """The JSON `meta` of the newest (or given) step (e.g. the phase, to build the template)."""
    step = self._step(step)
    try:
      with quiet_closed_event_loop():
        return self._manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # orbax raises many types for corrupt files.
      raise CheckpointError(f"cannot read the metadata of checkpoint step {step} in "
                            f"{self.directory}: {short_reason(e)}", short_reason(e)) from e

  def restore(self, abstract_state: Any, step: int | None = None, sharding=None
              ) -> tuple[Any, dict]:
    """Restores the newest (or given) step onto the structure of `abstract_state` (arrays or
    ShapeDtypeStructs), placed with `sharding` if given, else each leaf's own sharding."""
    step = self._step(step)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or getattr(
            x, "sharding", None)), abstract_state)
    try:
      with quiet_closed_event_loop():
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for corrupt or mismatched files.
      raise CheckpointError(
          f"cannot restore checkpoint step {step} from {self.directory}: {short_reason(e)}. "
          "The files may be corrupt or written by another model/config: rerun with the config "
          "that wrote it, or pass a new --workdir to start over.", short_reason(e)) from e
    return restored["state"], restored["meta"]

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are committed to disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False
