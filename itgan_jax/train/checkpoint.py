"""Atomic, resumable checkpoints of the whole training state (orbax CheckpointManager).

A checkpoint holds one pytree (`state`: parameters, optimizer states, EMA, step) and one JSON
document (`meta`: the loop's host-side bookkeeping such as partial-epoch metric sums and the config).
orbax writes each step into a temporary directory and renames it when complete, so a crash or kill
during a save leaves the previous checkpoint intact; a rerun of the same command restores the newest
complete step.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored."""


class Checkpointer:
  """Saves and restores `(state, meta)` under `<workdir>/checkpoints/<step>`."""

  def __init__(self, workdir: str | pathlib.Path, max_to_keep: int = 2):
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True,
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts an asynchronous save of `state` (a pytree) and `meta` (JSON) at `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores the newest (or given) step onto the structure/shardings of `abstract_state`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint found in {self.directory}")
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        abstract_state)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for corrupt or mismatched files.
      raise CheckpointError(
          f"cannot restore checkpoint step {step} from {self.directory}: {type(e).__name__}: {e}\n"
          "The files may be corrupt or written by a different model/config. Either rerun with the "
          "config that wrote it, or delete that step directory (an older step, if any, is then "
          "used) or pass a fresh --workdir to start over.") from e
    return restored["state"], restored["meta"]

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are committed to disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
