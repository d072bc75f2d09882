"""Atomic, resumable checkpoints of the whole training state (orbax CheckpointManager).

A checkpoint holds one pytree (`state`: parameters, optimizer states, EMA, step) and one JSON
document (`meta`: the loop's host-side bookkeeping such as partial-epoch metric sums and the config).
orbax writes each step into a temporary directory and renames it when complete, so a crash or kill
during a save leaves the previous checkpoint intact; a rerun of the same command restores the newest
complete step. A newest step that cannot be read (truncated or garbage files, a missing data
directory) is set aside, never deleted, when an older step restores (`set_aside`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from itgan_jax.train import quiet_restore


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
      with quiet_restore.quiet_closed_event_loop():
        return self._manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # orbax raises many types for corrupt files.
      raise CheckpointError(f"cannot read the metadata of checkpoint step {step} in "
                            f"{self.directory}: {short_reason(e)}", short_reason(e)) from e

  def restore(self, abstract_state: Any, step: int | None = None, sharding=None
              ) -> tuple[Any, dict]:
    """Restores the newest (or given) step onto the structure of `abstract_state` (arrays or
    ShapeDtypeStructs), placed with `sharding`: one `jax.sharding.Sharding` for every leaf, a
    pytree of them with the structure of `abstract_state` (one per leaf: e.g. parameters split
    over a mesh axis, `chunk.state_sharding`), or None (each leaf's own sharding). A pytree that
    does not match the state is a ValueError (a caller's mistake, not an unreadable step)."""
    step = self._step(step)
    if sharding is None or isinstance(sharding, jax.sharding.Sharding):
      target = jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or getattr(
              x, "sharding", None)), abstract_state)
    else:
      try:
        target = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state,
            sharding)
      except ValueError as e:
        raise ValueError(f"the shardings passed to restore do not match the structure of the "
                         f"state ({e}); pass one sharding, or one per leaf of the state") from None
    try:
      with quiet_restore.quiet_closed_event_loop():
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
