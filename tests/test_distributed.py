"""itgan_jax.train.distributed: single-process behaviour, argument checks, and a real 2-process job.

The pytest process has 8 fake CPU devices (conftest.py) and one process. The two-process test
starts two CPU workers (tests/multiprocess_worker.py, 2 devices each) on 127.0.0.1 as one JAX job
and compares their global-batch computation with this process on 4 devices.
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from itgan_jax.train import distributed
from itgan_jax.train import sharding as sharding_lib
from tests import multiprocess
from tests import multiprocess_worker as worker

_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID",
        "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
        "OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
        "TPU_PROCESS_ADDRESSES")


@pytest.fixture
def clean_env(monkeypatch):
  """No distributed/launcher variables, and a started backend: no call here can change the pytest
  process's 8 devices (before the backend starts, local_device_count would set them)."""
  for name in _ENV:
    monkeypatch.delenv(name, raising=False)
  jax.devices()
  yield monkeypatch
  assert jax.local_device_count() == 8 and not jax.distributed.is_initialized()


def test_initialize_single_process_is_a_no_op(clean_env):
  assert distributed.initialize() is False
  assert distributed.initialize(num_processes=1) is False
  assert distributed.initialize(num_processes=1, process_id=0, local_device_count=8) is False
  clean_env.setenv("JAX_NUM_PROCESSES", "1")
  assert distributed.initialize() is False
  assert not jax.distributed.is_initialized()
  assert jax.process_count() == 1 and distributed.is_main_process()


@pytest.mark.parametrize("kwargs, env, match", [
    (dict(num_processes=0), {}, r"num_processes=0 must be >= 1"),
    (dict(num_processes=2, process_id=2, coordinator_address="h:1"), {}, r"process_id=2 must be <"),
    (dict(process_id=-1), {}, r"process_id=-1 must be >= 0"),
    (dict(num_processes=1, process_id=1), {}, r"process_id=1 must be < num_processes=1"),
    (dict(num_processes=2, process_id=0, coordinator_address="nohost"), {}, r"not 'host:port'"),
    (dict(num_processes=2, process_id=0, coordinator_address="h:99999"), {}, r"not 'host:port'"),
    (dict(num_processes=2, process_id=0), {}, r"needs coordinator_address.*not coordinator_addr"),
    (dict(coordinator_address="h:1"), {}, r"not num_processes, process_id"),
    (dict(num_processes="2"), {}, r"num_processes='2' must be an int"),
    (dict(local_device_count=0), {}, r"local_device_count=0 must be a positive int"),
    (dict(local_device_count=2), {}, r"local_device_count=2 but JAX is already running with 8"),
    ({}, {"JAX_NUM_PROCESSES": "two"}, r"JAX_NUM_PROCESSES='two' is not an integer"),
    ({}, {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "5", "JAX_COORDINATOR_ADDRESS": "h:1"},
     r"process_id \(from JAX_PROCESS_ID\)=5 must be < num_processes \(from JAX_NUM_PROCESSES\)"),
    ({}, {"JAX_PROCESS_ID": "1"}, r"got process_id \(from JAX_PROCESS_ID\) but not"),
])
def test_initialize_rejects_inconsistent_arguments(clean_env, kwargs, env, match):
  for name, value in env.items():
    clean_env.setenv(name, value)
  with pytest.raises(ValueError, match=match) as info:
    distributed.initialize(**kwargs)
  assert "\n" not in str(info.value)
  assert not jax.distributed.is_initialized()


def test_initialize_after_backend_start_is_refused(clean_env):
  with pytest.raises(RuntimeError, match=r"must run before any JAX computation") as info:
    distributed.initialize("127.0.0.1:1234", 2, 0)
  assert "\n" not in str(info.value)
  assert not jax.distributed.is_initialized()


def test_launcher_environment_is_detected(clean_env):
  assert distributed._launcher_env() is None
  for name, value in (("SLURM_JOB_ID", "7"), ("SLURM_STEP_NODELIST", "n[1-2]"),
                      ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0"), ("SLURM_NTASKS", "1")):
    clean_env.setenv(name, value)
  assert distributed._launcher_env() is None  # one task: a single process.
  clean_env.setenv("SLURM_NTASKS", "2")
  assert distributed._launcher_env() == "SLURM"
  for name in _ENV:
    clean_env.delenv(name, raising=False)
  clean_env.setenv("TPU_WORKER_HOSTNAMES", "host-0,host-1")
  assert distributed._launcher_env() == "Cloud TPU (GKE)"


def test_process_batch_slice_one_process_is_the_whole_batch():
  mesh = sharding_lib.make_mesh()
  assert mesh.devices.size == 8
  assert sharding_lib.process_batch_slice(16, mesh) == slice(0, 16)
  assert sharding_lib.process_batch_slice(8, sharding_lib.make_mesh(4)) == slice(0, 8)
  with pytest.raises(ValueError, match=r"global batch 12 is not a positive multiple of the "
                                       r"mesh's 8 data shards"):
    sharding_lib.process_batch_slice(12, mesh)


def test_global_batch_array_one_process():
  mesh = sharding_lib.make_mesh()
  x = np.arange(3 * 16 * 2, dtype=np.float32).reshape(3, 16, 2)
  plan = {"x": x, "idx": np.arange(3 * 16, dtype=np.int32).reshape(3, 16)}
  out = sharding_lib.global_batch_array(plan, mesh, batch_axis=1)
  for key in plan:
    assert out[key].shape == plan[key].shape
    assert out[key].sharding.is_equivalent_to(sharding_lib.batch_sharded(mesh, 1), plan[key].ndim)
    np.testing.assert_array_equal(np.asarray(out[key]), plan[key])
  flat = sharding_lib.global_batch_array(x[0], mesh)
  assert flat.sharding.spec == sharding_lib.batch_sharded(mesh, 0).spec
  with pytest.raises(ValueError, match=r"12 local rows along axis 0 do not split over this "
                                       r"process's 8 of the mesh's 8 data shards"):
    sharding_lib.global_batch_array(x[0, :12], mesh)
  with pytest.raises(ValueError, match=r"no batch axis 1"):
    sharding_lib.global_batch_array(np.zeros(4), mesh, batch_axis=1)


def test_replicated_array_one_process():
  mesh = sharding_lib.make_mesh()
  tree = {"w": np.arange(6.0).reshape(2, 3), "step": 3, "lr": 0.5}
  out = sharding_lib.replicated_array(tree, mesh)
  assert out["w"].dtype == np.float32 and out["step"].shape == ()
  for key in tree:
    assert out[key].sharding.is_fully_replicated
    assert len(out[key].sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(tree[key]))


def _reference():
  """The worker's computation in this single process on 4 devices."""
  mesh = sharding_lib.make_mesh(4)
  x, w, xi = worker.make_data()
  batch = sharding_lib.global_batch_array({"x": x, "xi": xi}, mesh, batch_axis=1)
  return worker.compute(mesh, sharding_lib.replicated_array(w, mesh), batch["x"], batch["xi"])


def _worker_argv(port, modes):
  script = pathlib.Path(worker.__file__)
  return [multiprocess.python_argv(script, f"127.0.0.1:{port}", str(len(modes)), str(i), mode)
          for i, mode in enumerate(modes)]


def test_two_processes_form_one_job_and_match_one_process():
  # Process 0 gets its arguments in the call, process 1 from JAX_* environment variables.
  run = multiprocess.run_processes(_worker_argv(multiprocess.free_port(), ["args", "env"]),
                                   multiprocess.worker_env(num_cpu_devices=2), timeout=60)
  results = []
  for r in run.results:
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, run.report()
    results.append(json.loads(lines[0][len("RESULT "):]))

  reference = _reference()
  for i, res in enumerate(results):
    assert res["started"] and res["process_index"] == i and res["is_main"] == (i == 0)
    assert res["again"] is True and "already running with other arguments" in res["clash"]
    assert res["device_count"] == 4 and res["process_count"] == 2
    assert res["shape"] == [worker.STEPS, worker.BATCH, worker.DIM]
    assert res["shard_data_ok"] and res["replicated_ok"] and res["replicated_sharding"] == "P()"
    # Exact (integer-valued) sums are bit-identical; float means agree to rounding (the gloo
    # all-reduce across processes adds in another order than one process's 4 devices).
    assert res["exact"] == reference["exact"]
    np.testing.assert_allclose(res["means"], reference["means"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(res["total"], reference["total"], rtol=1e-6)
    assert "non-contiguous batch rows" in res["interleaved_error"]
    assert "do not split over this process's 2 of the mesh's 4 data shards" in \
        res["wrong_rows_error"]
  # Replicated outputs are the same in both processes, bit for bit.
  assert results[0]["means"] == results[1]["means"] and results[0]["total"] == results[1]["total"]
  # The two processes' slices partition the batch, and each is where its devices' shards are.
  (a0, b0), (a1, b1) = results[0]["slice"], results[1]["slice"]
  assert (a0, b0, a1, b1) == (0, worker.BATCH // 2, worker.BATCH // 2, worker.BATCH)
  for res in results:
    rows = res["shard_rows"]
    assert rows[0][0] == res["slice"][0] and rows[-1][1] == res["slice"][1]
    assert all(stop == start for (_, stop), (start, _) in zip(rows, rows[1:]))


def test_a_failing_process_ends_the_job_at_once():
  """Process 1 raises after the start: the launcher reports its traceback within seconds."""
  with pytest.raises(multiprocess.MultiprocessError) as info:
    multiprocess.run_processes(_worker_argv(multiprocess.free_port(), ["args", "fail"]),
                               multiprocess.worker_env(num_cpu_devices=2), timeout=60)
  report = str(info.value)
  assert "worker 1 fails on purpose" in report and "process 1: returncode 1" in report
  assert float(report.split(" after ")[1].split(" s")[0]) < 30


def test_run_processes_kills_all_when_one_fails():
  fail = "import sys; sys.exit(3)"
  hang = "import time; time.sleep(60)"
  argv = [multiprocess.python_argv("-c", fail), multiprocess.python_argv("-c", hang)]
  with pytest.raises(multiprocess.MultiprocessError, match=r"(?s)failed after .*returncode 3"):
    multiprocess.run_processes(argv, timeout=30)
  run = multiprocess.run_processes(argv[1:], timeout=0.5, check=False)
  assert run.reason == "timeout" and run.results[0].returncode == -9 and run.wall_s < 10
