"""The shared training loop: workdir, resume, jitted chunks of steps, evaluators, logs, signals.

It drives any `train.contract.Experiment` (built by `itgan_jax.experiment.build`) and knows no
variant: the variant's `init` and pure per-phase steps, its metric keys for progress and logs, its
evaluators for everything measured after an epoch. The loop runs `train.steps_per_call`
iterations per device call as one `lax.scan` (`train/chunk.py`), compiles one chunk function per
phase and chunk length, never runs a chunk across a phase start and lets the variant transform the
state there (`enter_phase`), checkpoints every `checkpoint.every_epochs`, inside an epoch every
`checkpoint.every_steps` iterations if set (for epochs that take hours) and on SIGTERM/SIGINT
(the phase recorded beside the state), and stops with a clear error (keeping the last good
checkpoint) when a metric becomes NaN/Inf. Iteration `t` draws its randomness from
`fold_in(state.rng, t)` and its data from the epoch plan of `(seed, epoch)`, so a resumed run is
bit-for-bit the uninterrupted one. The state is replicated over the mesh unless the variant's
optional `state_sharding` hook places some leaves otherwise (`chunk.state_sharding`: the same
placement at init, in every chunk, after `enter_phase` and on restore).

Many processes: every process runs this loop on its share of the devices (see `distributed.py`);
all of them save checkpoints (orbax coordinates them), only process 0 writes logs, TensorBoard,
PNGs, `config.json` and `final.json`.
"""

from __future__ import annotations

import bisect
import json
import pathlib
import signal
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from itgan_jax.train import chunk as chunk_lib
from itgan_jax.train import precision as precision_lib
from itgan_jax.train import quiet_restore
from itgan_jax.train import run_config
from itgan_jax.train import sharding as sharding_lib
from itgan_jax.train import writers
from itgan_jax.train.checkpoint import CheckpointError, Checkpointer


class NonFiniteLossError(RuntimeError):
  """A training loss or the training state became NaN or Inf."""


class StopRequested(KeyboardInterrupt):
  """Training stopped on SIGTERM/SIGINT after saving a checkpoint; `signum` is the signal."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


class _StopRequest:
  """Turns SIGTERM/SIGINT into a flag checked between chunks (a second SIGINT aborts at once).

  With several processes a signal may reach only some of them (a scheduler preempting one host,
  Ctrl-C in one terminal), while a checkpoint save is a collective every process must make. So
  the decision is taken together: `agreed()` is called by every process after every chunk and
  all-gathers the local flags (one tiny cross-process collective), and every process stops at
  the same step when any of them was signalled. The handler replaces JAX's preemption notifier
  for SIGTERM (distributed.py), so SIGINT and SIGTERM behave alike on one process or many.
  """

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not in the main thread (e.g. some notebook kernels): no handler.
        pass
    return self

  def _handle(self, signum, frame):
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    logging.warning("received %s: saving a checkpoint at the next chunk boundary",
                    signal.Signals(signum).name)

  def agreed(self) -> int | None:
    """The signal any process of the job received (the same answer in every process), or None.
    Every process must call it at the same points (here: after every chunk)."""
    signum = self.signum or 0
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      signum = int(np.max(multihost_utils.process_allgather(np.int32(signum))))
    return signum or None

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def _kept_message(last: int | None, checkpointer: Checkpointer) -> str:
  if last is None:
    return ("No checkpoint was saved, so rerunning the same command starts over; try a lower "
            "learning rate or another seed.")
  return (f"The last good checkpoint (step {last}) is kept in {checkpointer.directory}; try a "
          "lower learning rate or another seed, or rerun the same command to resume from it.")


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


# Kept as a name of this module for existing callers.
chunk_compiler_options = chunk_lib.chunk_compiler_options


def check_config(config: ml_collections.ConfigDict) -> None:
  """The loop's own keys (train, checkpoint, log): clear errors before anything is built."""
  for key in ("train.num_epochs", "train.steps_per_call", "checkpoint.every_epochs",
              "checkpoint.max_to_keep", "log.curves_every_epochs"):
    section, name = key.split(".")
    value = config[section][name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"config.{key}={value!r} must be an integer >= 1")
  every_steps = config.checkpoint.get("every_steps")
  if every_steps is not None and (isinstance(every_steps, bool) or not isinstance(every_steps, int)
                                  or every_steps < 1):
    raise ValueError(f"config.checkpoint.every_steps={every_steps!r} must be an integer >= 1 "
                     "(mid-epoch checkpoints for slow epochs) or None (off)")


class _NullWriter:
  """The writer of processes other than 0: logs nothing."""

  def truncate_after(self, epoch):
    pass

  def write(self, step, record):
    pass

  def write_image(self, step, tag, image):
    pass

  def records(self):
    return []

  def close(self):
    pass


def _usable_workdir(workdir: pathlib.Path) -> pathlib.Path:
  """Creates `workdir` and checks that it takes files; a one-line ValueError otherwise."""
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f".write_probe_{jax.process_index()}"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    why = e.strerror or type(e).__name__
    raise ValueError(f"--workdir={workdir} cannot hold a run ({why}: "
                     f"{e.filename or workdir}); pass a writable directory path") from None
  return workdir


def _phase_of(phase_starts: tuple[int, ...], step: int) -> int:
  return bisect.bisect_right(phase_starts, step)


def _steps_to_phase_end(phase_starts: tuple[int, ...], step: int) -> int | None:
  later = [s for s in phase_starts if s > step]
  return later[0] - step if later else None


def _prefetch_next(exp, config, mesh, plan, epoch: int, next_step: int, total_steps: int,
                   phase_starts: tuple[int, ...]) -> None:
  """Hands the plan rows of the chunk that starts at `next_step` to a feeder that prefetches
  (`train/streaming.py`); the same chunk boundaries as the loop below."""
  prefetch = getattr(exp.feeder, "prefetch", None)
  if prefetch is None or next_step >= total_steps:
    return
  spe = exp.steps_per_epoch
  next_epoch, in_epoch = divmod(next_step, spe)
  n = min(config.train.steps_per_call, spe - in_epoch)
  to_end = _steps_to_phase_end(phase_starts, next_step)
  if to_end is not None:
    n = min(n, to_end)
  rows = plan if next_epoch == epoch else exp.epoch_plan(next_epoch)
  prefetch({k: v[in_epoch:in_epoch + n] for k, v in rows.items()}, mesh)


# Kept as a name of this module for existing callers (evaluate.py, tests).
abstract_state = chunk_lib.abstract_state


@jax.jit
def _all_finite(state) -> jax.Array:
  leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True


def _restore_newest_readable(checkpointer: Checkpointer, exp, seed: int, mesh):
  """Restores the newest step that reads, placed on `mesh` as the chunks expect it
  (`chunk.state_sharding` of the step's phase); newer unreadable steps are set aside (never
  deleted). Returns (state, meta, one-line warnings to print). Raises `CheckpointError` (every
  step's cause) when none reads."""
  failures, warnings = [], []
  for step in checkpointer.steps():
    try:
      phase = int(checkpointer.restore_meta(step).get("phase", 0))
      template = abstract_state(exp, phase, seed)
      state, meta = checkpointer.restore(
          template, step=step, sharding=chunk_lib.state_sharding(exp, mesh, phase, template))
    except CheckpointError as e:
      failures.append((step, e.reason))
      continue
    for bad, reason in failures:
      where = checkpointer.directory.parent / "unreadable_checkpoints" / str(bad)
      if jax.process_index() == 0:
        where = checkpointer.set_aside(bad)
      message = (f"checkpoint step {bad} is unreadable ({reason}); kept aside in {where}, "
                 f"resuming from step {step}")
      logging.info(message)
      warnings.append(message)
    if failures and jax.process_count() > 1:  # process 0 moved them: every process forgets them
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("itgan_jax checkpoints set aside")
      checkpointer.reload()
    return state, dict(meta, phase=phase), warnings
  raise CheckpointError(
      f"no checkpoint in {checkpointer.directory} can be read: "
      + "; ".join(f"step {step}: {reason}" for step, reason in failures)
      + ". Nothing was moved or deleted. If the config or code changed, rerun with the ones "
      "that wrote them; else pass a new --workdir to start over.")


def _write_images(workdir, writer, step: int, epoch: int, images: dict) -> None:
  for tag, grid in images.items():
    writers.save_png(workdir / tag / f"epoch_{epoch:04d}.png", grid)
    writers.save_png(workdir / tag / "latest.png", grid)
    writer.write_image(step, tag, grid)


def train_and_evaluate(exp, config: ml_collections.ConfigDict, workdir: str,
                       chunk_callback: Callable[[int], None] | None = None) -> dict[str, Any]:
  """Trains experiment `exp` (built from `config`) in `workdir`, resuming from its newest
  checkpoint; returns the last epoch's record.

  Everything it traces (initialisation, chunks, phase transforms, evaluators and their metric
  networks) is traced under `exp.matmul_precision` (config.precision.matmul).
  `chunk_callback(step)`, if given, is called on the host after every chunk (tests, notebooks).
  """
  with precision_lib.matmul_context(getattr(exp, "matmul_precision", None)):
    return _train_and_evaluate(exp, config, workdir, chunk_callback)


def _train_and_evaluate(exp, config: ml_collections.ConfigDict, workdir: str,
                        chunk_callback: Callable[[int], None] | None) -> dict[str, Any]:
  check_config(config)
  main_process = jax.process_index() == 0
  workdir = _usable_workdir(pathlib.Path(workdir))
  variant = exp.variant
  mesh = sharding_lib.make_mesh(config.get("num_devices"))
  sharding_lib.check_batch_divisible(exp.batch_size, mesh)
  spe, num_epochs = exp.steps_per_epoch, config.train.num_epochs
  total_steps = spe * num_epochs
  every_steps = config.checkpoint.get("every_steps")
  phase_starts = tuple(variant.phase_starts)

  checkpointer = Checkpointer(workdir, max_to_keep=config.checkpoint.max_to_keep)
  if checkpointer.latest_step() is not None:  # an existing run: bound to its stored config
    for key, (old, new) in run_config.check_resume(workdir, config).items():
      logging.warning("resuming with %s=%r (the run started with %r)", key, new, old)
  elif main_process:
    run_config.write(workdir, config)

  # --- state: fresh (data-dependent init) or restored -------------------------------------------
  meta = {"epoch_sums": {}, "epoch_wall": 0.0, "phase": 0}
  if checkpointer.latest_step() is not None:
    with quiet_restore.quiet_closed_event_loop():  # also the late callbacks of a failed step
      state, meta, warnings = _restore_newest_readable(checkpointer, exp, config.seed, mesh)
    for message in warnings if main_process else ():  # printed outside the filtered stderr
      print(f"warning: {message}", file=sys.stderr, flush=True)
    logging.info("resumed from %s at step %d (phase %d)", checkpointer.directory,
                 int(state.step), meta["phase"])
  else:
    state = chunk_lib.init_state(exp, mesh, config.seed)
  state_phase = int(meta.get("phase", 0))
  start_step = int(state.step)
  # A resumed run's TensorBoard events start with a purge marker at its step, so readers drop
  # the points that a killed run logged after its last checkpoint.
  writer = (writers.MetricWriter(workdir, tensorboard=config.log.tensorboard,
                                 purge_step=start_step if start_step else None)
            if main_process else _NullWriter())
  writer.truncate_after(start_step // spe)

  arrays = exp.feeder.put(mesh)
  for evaluator in exp.evaluators:
    evaluator.prepare(mesh)
  phase_transforms: dict[int, Any] = {}  # phase -> the jitted enter_phase placing its state

  def enter_phase(state, phase: int):
    if phase not in phase_transforms:
      phase_transforms[phase] = jax.jit(
          variant.enter_phase, static_argnums=(1,), donate_argnums=(0,),
          out_shardings=chunk_lib.state_sharding(exp, mesh, phase))
    return phase_transforms[phase](state, phase)
  run_chunks: dict[tuple[int, int], Any] = {}
  curve_keys = list(dict.fromkeys(
      tuple(variant.curve_keys) + tuple(k for e in exp.evaluators for k in e.keys)))

  record: dict[str, Any] = {}
  progress = None
  if config.log.progress and main_process:
    from tqdm import tqdm
    progress = tqdm(total=total_steps, initial=start_step, unit="it", dynamic_ncols=True,
                    mininterval=2.0, desc="train")

  def save(step, meta):
    if not bool(_all_finite(state)):  # never save (and later resume) a non-finite state
      last = checkpointer.latest_step()
      raise NonFiniteLossError(
          f"the training state became NaN/Inf by step {step} (epoch {step // spe + 1}) and was "
          f"not saved. {_kept_message(last, checkpointer)}")
    checkpointer.save(step, state, dict(meta, phase=state_phase))

  try:
    with _StopRequest() as stop:
      step = start_step
      while step < total_steps:
        epoch, in_epoch = divmod(step, spe)
        plan = exp.epoch_plan(epoch)
        sums = {k: float(v) for k, v in meta["epoch_sums"].items()}
        wall = float(meta["epoch_wall"])
        t_epoch = time.time()
        while in_epoch < spe:
          while state_phase < _phase_of(phase_starts, step):
            state_phase += 1
            state = enter_phase(state, state_phase)
            logging.info("step %d: entered phase %d", step, state_phase)
          n = min(config.train.steps_per_call, spe - in_epoch)
          to_end = _steps_to_phase_end(phase_starts, step)
          if to_end is not None:
            n = min(n, to_end)
          key = (state_phase, n)
          if key not in run_chunks:
            run_chunks[key] = chunk_lib.make_chunk_fn(
                exp, mesh, n, phase=state_phase,
                compiler_options=chunk_lib.chunk_compiler_options(config.train))
          inputs = exp.feeder.chunk_inputs(
              {k: v[in_epoch:in_epoch + n] for k, v in plan.items()}, mesh)
          state, metrics = run_chunks[key](state, arrays, inputs)
          _prefetch_next(exp, config, mesh, plan, epoch, step + n, total_steps, phase_starts)
          metrics = jax.device_get(metrics)
          bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
          if bad:
            raise NonFiniteLossError(
                f"{', '.join(bad)} became NaN/Inf within steps {step}..{step + n - 1} "
                f"(epoch {epoch + 1}). Training stopped. "
                f"{_kept_message(checkpointer.latest_step(), checkpointer)}")
          for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(np.sum(v, dtype=np.float64))
          step += n
          in_epoch += n
          if progress is not None:
            progress.set_description(f"epoch {epoch + 1}/{num_epochs}")
            progress.set_postfix({k: f"{sums[k] / in_epoch:.4f}" for k in variant.progress_keys
                                  if k in sums}, refresh=False)
            progress.update(n)
          if chunk_callback is not None:
            chunk_callback(step)
          stop_signal = stop.agreed()
          if (every_steps and in_epoch < spe and stop_signal is None
              and step // every_steps > (step - n) // every_steps):  # crossed a multiple
            save(step, {"epoch_sums": sums, "epoch_wall": wall + time.time() - t_epoch})
          if stop_signal is not None and in_epoch < spe:
            meta = {"epoch_sums": sums, "epoch_wall": wall + time.time() - t_epoch}
            save(step, meta)
            raise StopRequested(
                f"stopped by {signal.Signals(stop_signal).name} at step {step}; checkpoint saved "
                f"in {checkpointer.directory}. Rerun the same command to resume.", stop_signal)
        epoch_time = wall + time.time() - t_epoch

        # --- end of epoch: evaluators, log, images, checkpoint -----------------------------------
        record = {"epoch": epoch + 1, "step": step}
        record.update({k: v / spe for k, v in sums.items()})
        images: dict[str, np.ndarray] = {}
        for evaluator in exp.evaluators:
          if evaluator.due(epoch + 1):
            out = evaluator(state, epoch + 1)
            record.update(out.scalars)
            images.update(out.images)
        record["epoch_time_s"] = epoch_time
        record["steps_per_s"] = spe / max(epoch_time, 1e-9)
        writer.write(step, record)
        eta = (total_steps - step) / spe * epoch_time
        line = "epoch {}/{} | {} | {:.1f} s/epoch | ETA {}".format(
            epoch + 1, num_epochs,
            " ".join(f"{k}={v:.4g}" for k, v in record.items()
                     if k not in ("epoch", "step", "epoch_time_s", "steps_per_s")
                     and isinstance(v, (int, float))),
            epoch_time, _format_eta(eta))
        logging.info(line)
        if progress is not None:
          progress.write(line)
        elif config.log.print_epochs and main_process:
          print(line, flush=True)
        if main_process:
          _write_images(workdir, writer, step, epoch + 1, images)
          if ((epoch + 1) % config.log.curves_every_epochs == 0 or step == total_steps
              or stop_signal is not None):
            writers.plot_curves(writer.records(), curve_keys, workdir / "curves.png")
        meta = {"epoch_sums": {}, "epoch_wall": 0.0}
        if ((epoch + 1) % config.checkpoint.every_epochs == 0 or step == total_steps
            or stop_signal is not None):
          save(step, meta)
        if stop_signal is not None and step < total_steps:
          raise StopRequested(
              f"stopped by {signal.Signals(stop_signal).name} at step {step} (end of epoch "
              f"{epoch + 1}); checkpoint saved in {checkpointer.directory}. Rerun the same "
              "command to resume.", stop_signal)

  finally:
    if progress is not None:
      progress.close()
    checkpointer.close()
    writer.close()
  if not record:
    record = (writer.records() or [{}])[-1]
  if main_process:
    (workdir / "final.json").write_text(json.dumps(record, indent=2))
  return record
