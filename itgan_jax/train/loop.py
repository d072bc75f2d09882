"""The shared training loop: workdir, resume, jitted chunks of steps, evaluation, logs, signals.

A variant supplies `init(rng, x_init) -> TrainState` and a pure `train_step(state, batch, rng)`;
the loop runs `steps_per_call` iterations per device call as one `lax.scan` (no per-step Python
dispatch), checkpoints every `checkpoint.every_epochs` and on SIGTERM/SIGINT, and stops with a clear
error (keeping the last good checkpoint) when a loss becomes NaN/Inf. Iteration `t` draws its
randomness from `fold_in(state.rng, t)` and its data from the epoch plan of `(seed, epoch)`, so a
resumed run is bit-for-bit the uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from itgan_jax import experiment as experiment_lib
from itgan_jax.data import preprocess
from itgan_jax.train import sharding as sharding_lib
from itgan_jax.train import writers
from itgan_jax.train.checkpoint import Checkpointer


class NonFiniteLossError(RuntimeError):
  """A training loss became NaN or Inf."""


class _StopRequest:
  """Turns SIGTERM/SIGINT into a flag checked between chunks (a second SIGINT aborts at once)."""

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

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def chunk_compiler_options(train_config) -> dict[str, Any]:
  """XLA options for the training chunk: on CPU, with `train.xla_cpu_region_copy_analysis`
  (default on), copy insertion's region analysis, which proves more in-place updates of the scan
  carry safe and drops parameter-sized copies (1-4% of the MNIST iteration on XLA:CPU,
  `benchmarks/mnist_step.py --compare_copy_analysis 1`). On one device the results are
  bit-identical with it off (tested); on several devices XLA may then order cross-device sums
  differently (rounding-level changes, still deterministic). Other backends get no options."""
  if jax.default_backend() == "cpu" and train_config.get("xla_cpu_region_copy_analysis", True):
    return {"xla_cpu_copy_insertion_use_region_analysis": True}
  return {}


def _make_run_chunk(variant, feeder, mesh, num_steps: int,
                    compiler_options: dict[str, Any] | None = None):
  """Jits `num_steps` train steps as one lax.scan over the chunk's index plan."""
  data_spec = sharding_lib.batch_sharded(mesh, 1)

  def body(carry, idx_row, *, arrays):
    state = carry
    batch = feeder.gather(arrays, idx_row)
    batch = jax.lax.with_sharding_constraint(batch, sharding_lib.batch_sharded(mesh, 0))
    rng = jax.random.fold_in(state.rng, state.step)
    state, metrics = variant.train_step(state, batch, rng)
    return state, metrics

  def run(state, arrays, plan):
    return jax.lax.scan(functools.partial(body, arrays=arrays), state, plan, length=num_steps)

  repl = sharding_lib.replicated(mesh)
  return jax.jit(run, in_shardings=(repl, repl, data_spec), out_shardings=(repl, repl),
                 donate_argnums=(0,), compiler_options=compiler_options or None)


def _make_evaluate(variant, mesh, batch_size: int):
  """Jitted count of misclassified test examples with EMA and with raw parameters."""

  def count_errors(state, x, y, use_ema):
    n = x.shape[0]
    nb = n // batch_size
    xb = x[:nb * batch_size].reshape((nb, batch_size) + x.shape[1:])
    yb = y[:nb * batch_size].reshape((nb, batch_size))

    def one(args):
      xi, yi = args
      logits = variant.classify(state, xi, use_ema=use_ema)
      return jnp.sum(jnp.argmax(logits, -1) != yi)

    errors = jnp.sum(jax.lax.map(one, (xb, yb)))
    if nb * batch_size < n:
      logits = variant.classify(state, x[nb * batch_size:], use_ema=use_ema)
      errors += jnp.sum(jnp.argmax(logits, -1) != y[nb * batch_size:])
    return errors

  def evaluate(state, x, y):
    return {"test_errors_ema": count_errors(state, x, y, True),
            "test_errors_raw": count_errors(state, x, y, False)}

  repl = sharding_lib.replicated(mesh)
  return jax.jit(evaluate, in_shardings=(repl, repl, repl), out_shardings=repl)


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       chunk_callback: Callable[[int], None] | None = None) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming from its newest checkpoint); returns the last record.

  `chunk_callback(step)`, if given, is called on the host after every chunk (tests, notebooks).
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  exp = experiment_lib.build(config)
  mesh = sharding_lib.make_mesh(config.get("num_devices"))
  sharding_lib.check_batch_divisible(config.train.batch_size, mesh)
  repl = sharding_lib.replicated(mesh)
  spe, num_epochs = exp.steps_per_epoch, config.train.num_epochs
  total_steps = spe * num_epochs

  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  checkpointer = Checkpointer(workdir, max_to_keep=config.checkpoint.max_to_keep)
  writer = writers.MetricWriter(workdir, tensorboard=config.log.tensorboard)

  # --- state: fresh (data-dependent init) or restored -------------------------------------------
  init_fn = jax.jit(exp.variant.init, out_shardings=repl)
  x_init = preprocess.to_float(exp.x_init, exp.scale)
  root_rng = jax.random.PRNGKey(config.seed)
  state = init_fn(jax.random.fold_in(root_rng, 0), x_init)
  meta = {"epoch_sums": {}, "epoch_wall": 0.0}
  if checkpointer.latest_step() is not None:
    state, meta = checkpointer.restore(state)
    logging.info("resumed from %s at step %d", checkpointer.directory, int(state.step))
  start_step = int(state.step)
  writer.truncate_after(start_step // spe)

  arrays = exp.feeder.put(repl)
  n_eval = config.eval.get("max_examples") or exp.test_y.shape[0]  # smoke runs: a prefix
  x_test = jax.device_put(preprocess.to_float(exp.test_x[:n_eval], exp.scale), repl)
  y_test = jax.device_put(exp.test_y[:n_eval], repl)
  evaluate = _make_evaluate(exp.variant, mesh, config.eval.batch_size)
  generate = jax.jit(exp.variant.generate, out_shardings=repl)
  sample_z = exp.sample_latent(jax.random.fold_in(root_rng, 1), config.log.num_samples)
  run_chunks: dict[int, Any] = {}

  record: dict[str, Any] = {}
  progress = None
  if config.log.progress:
    from tqdm import tqdm
    progress = tqdm(total=total_steps, initial=start_step, unit="it", dynamic_ncols=True,
                    mininterval=2.0, desc="train")

  def save(step, meta):
    checkpointer.save(step, state, meta)

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
          n = min(config.train.steps_per_call, spe - in_epoch)
          if n not in run_chunks:
            run_chunks[n] = _make_run_chunk(exp.variant, exp.feeder, mesh, n,
                                            chunk_compiler_options(config.train))
          chunk_plan = {k: v[in_epoch:in_epoch + n] for k, v in plan.items()}
          state, metrics = run_chunks[n](state, arrays, chunk_plan)
          metrics = jax.device_get(metrics)
          bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
          if bad:
            last = checkpointer.latest_step()
            raise NonFiniteLossError(
                f"{', '.join(bad)} became NaN/Inf within steps {step}..{step + n - 1} "
                f"(epoch {epoch + 1}). Training stopped; the last good checkpoint "
                f"(step {last}) is kept in {checkpointer.directory}. Try a lower learning rate "
                "or another seed; rerunning the same command resumes from that checkpoint.")
          for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(np.sum(v, dtype=np.float64))
          step += n
          in_epoch += n
          if progress is not None:
            progress.set_description(f"epoch {epoch + 1}/{num_epochs}")
            progress.set_postfix({k: f"{sums[k] / in_epoch:.4f}" for k in
                                  ("loss_lab", "loss_unl", "loss_gen") if k in sums},
                                 refresh=False)
            progress.update(n)
          if chunk_callback is not None:
            chunk_callback(step)
          if stop.signum is not None and in_epoch < spe:
            meta = {"epoch_sums": sums, "epoch_wall": wall + time.time() - t_epoch}
            save(step, meta)
            raise KeyboardInterrupt(
                f"stopped by {signal.Signals(stop.signum).name} at step {step}; checkpoint saved "
                f"in {checkpointer.directory}. Rerun the same command to resume.")
        epoch_time = wall + time.time() - t_epoch

        # --- end of epoch: evaluate, log, sample, checkpoint -------------------------------------
        record = {"epoch": epoch + 1, "step": step}
        record.update({k: v / spe for k, v in sums.items()})
        if (epoch + 1) % config.eval.every_epochs == 0 or step == total_steps:
          errs = jax.device_get(evaluate(state, x_test, y_test))
          n_test = int(y_test.shape[0])
          for key, value in errs.items():
            record[key] = int(value)
            record[key.replace("errors", "err")] = int(value) / n_test
        record["epoch_time_s"] = epoch_time
        record["steps_per_s"] = spe / max(epoch_time, 1e-9)
        writer.write(step, record)
        eta = (total_steps - step) / spe * epoch_time
        line = "epoch {}/{} | {} | {:.1f} s/epoch | ETA {}".format(
            epoch + 1, num_epochs,
            " ".join(f"{k}={v:.4g}" for k, v in record.items()
                     if k not in ("epoch", "step", "epoch_time_s", "steps_per_s")),
            epoch_time, _format_eta(eta))
        logging.info(line)
        if progress is not None:
          progress.write(line)
        elif config.log.print_epochs:
          print(line, flush=True)
        if (epoch + 1) % config.log.samples_every_epochs == 0 or step == total_steps:
          images = preprocess.to_uint8(np.asarray(generate(state, sample_z)), exp.scale)
          grid = writers.image_grid(images)
          writers.save_png(workdir / "samples" / f"epoch_{epoch + 1:04d}.png", grid)
          writers.save_png(workdir / "samples" / "latest.png", grid)
          writer.write_image(step, "samples", grid)
          writers.plot_curves(writer.records(), exp.curve_keys, workdir / "curves.png")
        meta = {"epoch_sums": {}, "epoch_wall": 0.0}
        if (epoch + 1) % config.checkpoint.every_epochs == 0 or step == total_steps:
          save(step, meta)

  finally:
    if progress is not None:
      progress.close()
    checkpointer.close()
    writer.close()
  if not record:
    record = (writer.records() or [{}])[-1]
  (workdir / "final.json").write_text(json.dumps(record, indent=2))
  return record
