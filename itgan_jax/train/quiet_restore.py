"""Keeps a failing orbax restore's cause readable: TensorStore and asyncio print hundreds of lines
of side noise when a checkpoint cannot be read (measured: 495 lines before the cause).

* `quiet_closed_event_loop()`: while a restore runs, standard error is collected at the file
  descriptor level (the noise is printed from native code) and written back without the
  'RuntimeError: Event loop is closed' tracebacks of TensorStore's late callbacks (when they
  appear, only log, warning and error lines are kept: `drop_closed_loop_tracebacks`).
* A filter on the `asyncio` logger drops its 'Task exception was never retrieved' reports of
  orbax/TensorStore tasks (a TensorStore spec dump each), installed on import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import traceback


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


# Traces of the 'Event loop is closed' tracebacks, even when two threads' output cut them apart.
_NOISE_MARKS = ("Event loop", "_check_closed", "call_soon_threadsafe", "base_events.py")
# What a restore legitimately prints: absl log lines, our warnings/errors, Python warnings.
_KEEP = re.compile(r"(?:[IWEF]\d{4} |warning: |error: |\S.*Warning: )")


def drop_closed_loop_tracebacks(text: str) -> str:
  """`text` as it is, or, when it holds traces of asyncio's 'Event loop is closed' tracebacks,
  only its log, warning and error lines. Those tracebacks come from several native threads at
  once and cut each other at any character, so they cannot be removed line by line; a real
  failure of the restore is raised (CheckpointError), not printed, so nothing else is lost."""
  if not any(mark in text for mark in _NOISE_MARKS):
    return text
  return "".join(line for line in text.splitlines(keepends=True)
                 if _KEEP.match(line) and not any(mark in line for mark in _NOISE_MARKS))


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
