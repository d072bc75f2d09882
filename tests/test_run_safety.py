"""Run safety on a toy variant (seconds): the run bound to its config, unreadable checkpoints,
a torn metrics line, a non-finite state never saved, the NaN messages, SIGTERM's exit status."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from itgan_jax import evaluate, experiment
from itgan_jax.train import loop, run_config
from itgan_jax.train.checkpoint import CheckpointError, Checkpointer
from itgan_jax.train.contract import Experiment
from itgan_jax.train.input_pipeline import DeviceFeeder
from itgan_jax.train.state import Player, TrainState
from tests.helpers import load_config

DATA = np.random.RandomState(0).randint(0, 256, (64, 2, 2, 1)).astype(np.uint8)
SPE = 4


@dataclasses.dataclass(frozen=True)
class Toy:
  """Fits a 2-vector to batch means; with `nan_at` its parameters (not its loss) become NaN after
  that step."""
  nan_at: int | None = None
  metric_keys = ("loss",)
  progress_keys = ("loss",)
  curve_keys = ("loss",)
  phase_starts = ()

  def init(self, rng, init_batch):
    del init_batch
    return TrainState(step=jnp.zeros([], jnp.int32), rng=rng,
                      g=Player(jax.random.normal(rng, (2,)), {}, jnp.zeros(2)),
                      d=Player(jnp.zeros(()), {}, jnp.zeros(())))

  def train_step(self, state, batch, rng):
    target = jnp.mean(batch["x"]) + 0.01 * jax.random.normal(rng, (2,))
    loss, grad = jax.value_and_grad(lambda w: jnp.sum((w - target) ** 2))(state.g.params)
    params = state.g.params - 0.1 * grad
    if self.nan_at is not None:
      params = jnp.where(state.step + 1 >= self.nan_at, jnp.nan, params)
    return state.replace(step=state.step + 1, g=state.g.replace(params=params)), {"loss": loss}

  def phase_train_step(self, phase):
    return self.train_step

  def enter_phase(self, state, phase):
    raise AssertionError

  def generate(self, state, z):
    return jnp.zeros((z.shape[0], 2, 2, 1))

  def sample_latent(self, rng, num):
    return jax.random.uniform(rng, (num, 1))


def _exp(nan_at=None):
  def plan(epoch):
    rng = np.random.default_rng([0, epoch])
    return {"idx": rng.permutation(64)[:SPE * 8].reshape(SPE, 8).astype(np.int32)}
  return Experiment(variant=Toy(nan_at), feeder=DeviceFeeder({"x": DATA}, {"x": ("x", "idx")},
                                                             "unit"),
                    epoch_plan=plan, steps_per_epoch=SPE, init_batch=np.zeros((1, 2, 2, 1)),
                    evaluators=(), batch_size=8, scale="unit")


def _config(num_epochs=3, width=2):
  return ml_collections.ConfigDict(dict(
      seed=0, num_devices=1, model=dict(width=width),
      train=dict(num_epochs=num_epochs, steps_per_call=2),
      checkpoint=dict(every_epochs=1, max_to_keep=3),
      log=dict(progress=False, print_epochs=False, tensorboard=False,
               curves_every_epochs=1)))


def _params(workdir, step=None):
  with Checkpointer(workdir) as ckpt:
    state, _ = ckpt.restore(loop.abstract_state(_exp(), 0), step=step)
  return np.asarray(state.g.params)


def _epochs(workdir):
  return [json.loads(l)["epoch"] for l in (workdir / "metrics.jsonl").read_text().splitlines()]


# --- the run is bound to its config ---------------------------------------------------------------
def test_a_resume_with_another_computation_is_refused_and_the_stored_config_kept(tmp_path):
  loop.train_and_evaluate(_exp(), _config(num_epochs=1), str(tmp_path))
  stored = (tmp_path / "config.json").read_text()
  with pytest.raises(run_config.ConfigMismatchError,
                     match=r"model.width: 2 in the run, 3 now.*new --workdir"):
    loop.train_and_evaluate(_exp(), _config(num_epochs=2, width=3), str(tmp_path))
  with pytest.raises(run_config.ConfigMismatchError, match=r"seed: 0 in the run, 1 now"):
    changed = _config(num_epochs=2)
    changed.seed = 1
    loop.train_and_evaluate(_exp(), changed, str(tmp_path))
  assert (tmp_path / "config.json").read_text() == stored
  assert _epochs(tmp_path) == [1]


def test_more_epochs_and_logging_changes_resume_with_a_logged_note(tmp_path):
  loop.train_and_evaluate(_exp(), _config(num_epochs=1), str(tmp_path / "cut"))
  stored = (tmp_path / "cut" / "config.json").read_text()
  more = _config(num_epochs=3)
  more.checkpoint.every_epochs = 2
  more.train.steps_per_call = 4
  assert set(run_config.check_resume(tmp_path / "cut", more)) == {
      "checkpoint.every_epochs", "train.num_epochs", "train.steps_per_call"}
  loop.train_and_evaluate(_exp(), more, str(tmp_path / "cut"))
  loop.train_and_evaluate(_exp(), _config(num_epochs=3), str(tmp_path / "full"))
  np.testing.assert_array_equal(_params(tmp_path / "cut"), _params(tmp_path / "full"))
  assert (tmp_path / "cut" / "config.json").read_text() == stored


def test_resumable_keys():
  assert run_config.resumable("train.num_epochs") and run_config.resumable("evals.x.every_epochs")
  assert not run_config.resumable("train.batch_size") and not run_config.resumable("data.seed_data")
  assert run_config.differences({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1, 3]}}) == {
      "a.c": ([1, 2], [1, 3])}


def test_curves_are_drawn_every_n_epochs_at_the_end_and_at_a_stop(tmp_path, monkeypatch):
  drawn = []
  monkeypatch.setattr(loop.writers, "plot_curves",
                      lambda records, keys, path: drawn.append(records[-1]["epoch"]))
  config = _config(num_epochs=3)
  config.log.curves_every_epochs = 2

  def sigterm_at_the_end_of_epoch_1(step):
    if step == SPE:
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(KeyboardInterrupt, match="Rerun the same command"):
    loop.train_and_evaluate(_exp(), config, str(tmp_path), chunk_callback=sigterm_at_the_end_of_epoch_1)
  assert drawn == [1]  # by the stop
  loop.train_and_evaluate(_exp(), config, str(tmp_path))
  assert drawn == [1, 2, 3]  # epoch 2 by the schedule, epoch 3 as the last


def test_a_config_stored_before_newer_keys_is_completed_at_their_absent_values(shared_data_dir,
                                                                              tmp_path):
  stored = {"train": {"num_epochs": 3}, "log": {"progress": False}}
  assert run_config.complete(stored) == {
      "train": {"num_epochs": 3, "num_seeds": 1}, "precision": {"matmul": "highest",
      "compute_dtype": "float32"}, "log": {"progress": False, "curves_every_epochs": 1}}
  assert stored == {"train": {"num_epochs": 3}, "log": {"progress": False}}  # not modified
  # A real run's config.json without the keys added since (as runs stored before them) builds.
  config = load_config("mnist_ssl", "tiny", **{"data.dir": str(shared_data_dir)})
  old = run_config.as_plain(config)
  del old["log"]["curves_every_epochs"], old["precision"], old["train"]["num_seeds"]
  (tmp_path / run_config.FILENAME).write_text(json.dumps(old))
  loaded = evaluate.load_run_config(tmp_path)
  assert loaded.log.curves_every_epochs == 1 and loaded.precision.matmul == "highest"
  experiment.validate(loaded)


# --- unreadable checkpoints -----------------------------------------------------------------------
def _corrupt(step_dir):
  """Garbage in every array file of a checkpoint step (as a crashed disk or a partial copy)."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.stat().st_size > 0
           and not p.name.startswith("_")]
  assert files, list((step_dir / "state").rglob("*"))
  for p in files:
    p.write_bytes(b"\x00garbage" * 3)


def test_an_unreadable_newest_checkpoint_is_set_aside_and_the_older_one_resumes(tmp_path, capsys):
  loop.train_and_evaluate(_exp(), _config(num_epochs=3), str(tmp_path / "full"))
  loop.train_and_evaluate(_exp(), _config(num_epochs=2), str(tmp_path / "run"))
  _corrupt(tmp_path / "run" / "checkpoints" / "8")
  loop.train_and_evaluate(_exp(), _config(num_epochs=3), str(tmp_path / "run"))
  err = capsys.readouterr().err
  assert "checkpoint step 8 is unreadable" in err and "resuming from step 4" in err
  assert len(err.strip().splitlines()) <= 3, err
  assert (tmp_path / "run" / "unreadable_checkpoints" / "8").is_dir()
  np.testing.assert_array_equal(_params(tmp_path / "run"), _params(tmp_path / "full"))
  assert _epochs(tmp_path / "run") == [1, 2, 3]


def test_no_readable_checkpoint_is_a_short_error_that_moves_nothing(tmp_path):
  loop.train_and_evaluate(_exp(), _config(num_epochs=1), str(tmp_path))
  _corrupt(tmp_path / "checkpoints" / "4")
  with pytest.raises(CheckpointError, match="no checkpoint in .* can be read: step 4") as info:
    loop.train_and_evaluate(_exp(), _config(num_epochs=2), str(tmp_path))
  assert len(str(info.value)) < 800
  assert (tmp_path / "checkpoints" / "4").is_dir()
  assert not (tmp_path / "unreadable_checkpoints").exists()


# --- logs -----------------------------------------------------------------------------------------
def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
  loop.train_and_evaluate(_exp(), _config(num_epochs=1), str(tmp_path))
  with (tmp_path / "metrics.jsonl").open("a") as f:
    f.write('{"epoch": 2, "loss": 0.1')  # a kill while appending
  loop.train_and_evaluate(_exp(), _config(num_epochs=2), str(tmp_path))
  assert _epochs(tmp_path) == [1, 2]


def test_a_corrupt_metrics_line_names_the_file_and_line(tmp_path):
  loop.train_and_evaluate(_exp(), _config(num_epochs=1), str(tmp_path))
  path = tmp_path / "metrics.jsonl"
  path.write_text("not json\n" + path.read_text())
  with pytest.raises(ValueError, match=r"metrics.jsonl, line 1, is not a JSON record"):
    loop.train_and_evaluate(_exp(), _config(num_epochs=2), str(tmp_path))


# --- non-finite state -----------------------------------------------------------------------------
def test_a_non_finite_state_is_never_saved(tmp_path):
  # Parameters become NaN at step 8 = the end of epoch 2, while every loss stays finite.
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"state became NaN/Inf by step 8.*not saved.*\(step 4\) is kept"):
    loop.train_and_evaluate(_exp(nan_at=8), _config(num_epochs=3), str(tmp_path))
  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.steps() == [4]


def test_a_nan_before_any_checkpoint_says_nothing_was_saved(tmp_path):
  with pytest.raises(loop.NonFiniteLossError, match="No checkpoint was saved.*starts over"):
    loop.train_and_evaluate(_exp(nan_at=2), _config(num_epochs=1), str(tmp_path))


# --- signals --------------------------------------------------------------------------------------
def test_sigterm_stop_carries_its_signal_for_the_exit_status(tmp_path):
  def stop(step):
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(loop.StopRequested) as info:
    loop.train_and_evaluate(_exp(), _config(), str(tmp_path), chunk_callback=stop)
  assert info.value.signum == signal.SIGTERM


def test_main_exits_143_on_sigterm(tmp_path, shared_data_dir):
  """The CLI: SIGTERM -> checkpoint, the message, exit status 128 + 15."""
  proc = subprocess.Popen(
      [sys.executable, "-m", "itgan_jax.main", "--config=configs/mnist_ssl.py:tiny",
       f"--workdir={tmp_path}", f"--config.data.dir={shared_data_dir}",
       "--config.log.progress=False", "--config.train.num_epochs=50", "--config.num_devices=1",
       "--config.evals.test_error.max_examples=100"],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    for line in iter(proc.stdout.readline, ""):
      if line.startswith("epoch 1/"):
        proc.send_signal(signal.SIGTERM)
        break
    _, err = proc.communicate(timeout=300)
  finally:
    proc.kill()
  assert proc.returncode == 143, err[-2000:]
  assert "stopped by SIGTERM" in err


def _events(path):
  """The Event protos of one TensorBoard event file (TFRecord framing: length, crc, data, crc)."""
  import struct

  from tensorboardX.proto import event_pb2
  data, out, at = path.read_bytes(), [], 0
  while at < len(data):
    (length,) = struct.unpack("<Q", data[at:at + 8])
    out.append(event_pb2.Event.FromString(data[at + 12:at + 12 + length]))
    at += 12 + length + 4
  return out


def test_a_resume_starts_its_tensorboard_events_with_a_purge_marker(tmp_path):
  from tensorboardX.proto import event_pb2

  def stop(step):
    if step == 6:
      os.kill(os.getpid(), signal.SIGTERM)
  config = _config(num_epochs=2)
  config.log.tensorboard = True
  with pytest.raises(loop.StopRequested):  # epoch 1 logged at step 4, then stopped at step 6
    loop.train_and_evaluate(_exp(), config, str(tmp_path), chunk_callback=stop)
  loop.train_and_evaluate(_exp(), config, str(tmp_path))
  files = sorted((tmp_path / "tensorboard").glob("events.*"), key=lambda p: p.stat().st_mtime)
  assert len(files) == 2
  first = _events(files[0])
  assert not any(e.HasField("session_log") for e in first)
  starts = [e.step for e in _events(files[1])
            if e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START]
  assert starts == [6]  # readers drop the first file's points at steps >= 6


@pytest.mark.parametrize("make", ["file", "under_file"])
def test_an_unusable_workdir_is_one_line(tmp_path, make):
  (tmp_path / "f").write_text("x")
  workdir = tmp_path / "f" if make == "file" else tmp_path / "f" / "run"
  with pytest.raises(ValueError, match=r"cannot hold a run \(.*\); pass a writable") as info:
    loop.train_and_evaluate(_exp(), _config(), str(workdir))
  assert "\n" not in str(info.value)


def test_cli_resume_past_a_corrupt_checkpoint_prints_a_few_lines(tmp_path, shared_data_dir):
  """The real model through `itgan_jax.main`: the failing orbax restore used to print hundreds of
  'Event loop is closed' tracebacks before the cause."""
  args = [sys.executable, "-m", "itgan_jax.main", "--config=configs/mnist_ssl.py:tiny",
          f"--workdir={tmp_path}", f"--config.data.dir={shared_data_dir}", "--config.num_devices=1",
          "--config.log.progress=False", "--config.evals.test_error.max_examples=100"]
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run(args, cwd=repo, check=True, capture_output=True, timeout=300)
  _corrupt(tmp_path / "checkpoints" / "8")
  result = subprocess.run(args + ["--config.train.num_epochs=3"], cwd=repo, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Event loop is closed" not in result.stderr
  assert "checkpoint step 8 is unreadable" in result.stderr
  assert len(result.stderr.strip().splitlines()) <= 4, result.stderr[-3000:]
  assert (tmp_path / "unreadable_checkpoints" / "8").is_dir()


def test_drop_closed_loop_tracebacks_keeps_everything_else():
  from itgan_jax.train.quiet_restore import drop_closed_loop_tracebacks
  block = ("Traceback (most recent call last):\n"
           '  File "/usr/lib/python3.11/asyncio/base_events.py", line 806, in call_soon_threadsafe\n'
           "    self._check_closed()\n"
           '  File "/usr/lib/python3.11/asyncio/base_events.py", line 519, in _check_closed\n'
           "    raise RuntimeError('Event loop is closed')\n"
           "RuntimeError: Event loop is closed\n")
  other = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
           "ValueError: real problem\n")
  fragment = block[:120] + block  # two callbacks printing at once
  other_python = block.replace("python3.11", "python3.12").replace("806", "840").replace(
      "519", "545")  # paths and line numbers of another Python
  text = "before\n" + block + fragment + other_python + other + "W1203 a warning\n"
  # Amid the noise only log/warning/error lines survive (a real failure of a restore is raised,
  # not printed); without the noise the text is untouched.
  assert drop_closed_loop_tracebacks(text) == "W1203 a warning\n"
  clean = "before\n" + other + "W1203 a warning\n"
  assert drop_closed_loop_tracebacks(clean) == clean


def test_orphaned_orbax_task_reports_are_filtered_and_others_kept():
  import logging

  import itgan_jax.train.quiet_restore  # noqa: F401  (installs the filter)
  seen = []

  class Keep(logging.Handler):
    def emit(self, record):
      seen.append(record.getMessage())
  logger = logging.getLogger("asyncio")
  handler = Keep()
  logger.addHandler(handler)
  try:
    logger.error("Task exception was never retrieved\nfuture: <Task finished coro=<async_"
                 "deserialize() defined at /x/orbax/checkpoint/serialization.py:1>>")
    logger.error("Task exception was never retrieved\nfuture: <Task finished coro=<mine()>>")
    logger.error("something else")
  finally:
    logger.removeHandler(handler)
  assert seen == ["Task exception was never retrieved\nfuture: <Task finished coro=<mine()>>",
                  "something else"]
