"""Multi-process (multi-host) JAX: start `jax.distributed`, and place batches and values on a mesh.

One JAX job can span several processes (one per host, or several on one host). Every process runs
the same program; `jax.devices()` then lists the devices of all processes, a `Mesh` over them spans
the job, and a jitted function with `NamedSharding`s runs as one SPMD program in which every process
feeds the rows of the batch that live on its own devices (`sharding.process_batch_slice`,
`sharding.global_batch_array`) and holds the same replicated values (`sharding.replicated_array`).

`initialize` must run in every process before anything touches a JAX backend (no computation, no
`jax.devices()`, no `device_put` before it). Its arguments come, in this order, from:

1. the call's arguments;
2. the environment variables `JAX_COORDINATOR_ADDRESS` (`host:port` of process 0's coordinator
   service), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` (the last two are read here; JAX itself reads
   only `JAX_COORDINATOR_ADDRESS`, plus `JAX_COORDINATOR_BIND_ADDRESS`, `JAX_COORDINATOR_PORT` and
   `JAX_LOCAL_DEVICE_IDS`, which keep their JAX meaning);
3. a cluster launcher that `jax.distributed.initialize()` detects by itself (then the missing
   arguments are left to JAX):

   - SLURM (`srun`): `SLURM_JOB_ID`, `SLURM_STEP_NODELIST`, `SLURM_NTASKS`, `SLURM_PROCID`,
     `SLURM_LOCALID`; the coordinator is the first node of the step, port `JAX_COORDINATOR_PORT` or
     one derived from the job id. On GPUs each process then sees only the GPU `SLURM_LOCALID`.
   - Open MPI (`mpirun`, Open MPI 4 and older): `OMPI_MCA_orte_hnp_uri`, `OMPI_COMM_WORLD_SIZE`,
     `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_LOCAL_RANK`. (Open MPI 5 / other MPIs: JAX needs
     `mpi4py` and `cluster_detection_method="mpi4py"`, not wired here.)
   - Cloud TPU pods: on GKE, `TPU_WORKER_HOSTNAMES` or `TPU_PROCESS_ADDRESSES` (a comma-separated
     host list) and `TPU_WORKER_ID`; on TPU VMs (GCE) the worker list lives in the VM metadata
     server, which this module does not query: pass `auto_detect=True` there.

   Kubernetes Jobs (indexed, with the `kubernetes` package) and `mpi4py` are detected by JAX only
   when `auto_detect=True`. A single process started directly inside a multi-task allocation (e.g.
   a plain `python ...` in an `sbatch --ntasks=4` script, not under `srun`) also looks like a
   launcher and would wait for peers that never come: pass `num_processes=1`
   (`JAX_NUM_PROCESSES=1`) or `auto_detect=False` there.

With one process (nothing set, or `num_processes=1`) `initialize` starts nothing and the program
runs exactly as before. On CPU it selects gloo cross-process collectives (without them every jitted
computation spanning processes fails with "Multiprocess computations aren't implemented on the CPU
backend"), and `local_device_count` sets the number of CPU devices of this process
(`jax_num_cpu_devices`, which takes precedence over `--xla_force_host_platform_device_count`).

Behaviour of a started job that callers must respect (measured with jax 0.10.2, see
tests/test_distributed.py): every process must make the same collective calls in the same order
(every jitted call on global arrays, `device_put` onto a global sharding, and every orbax
`CheckpointManager` save/restore/wait/close: a save on process 0 alone hangs both processes); a
process that dies makes the others abort (their next collective fails; at exit they wait up to
`heartbeat_timeout_seconds`, or up to `shutdown_timeout_seconds` when the failed process is still
alive); SIGTERM is caught by JAX's preemption service (the process keeps running and
`jax.experimental.multihost_utils.reached_preemption_sync_point(step)` becomes true on all
processes at one step) unless a Python handler for SIGTERM is installed after `initialize`.
"""

from __future__ import annotations

import os

import jax

ENV_COORDINATOR_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None or value.strip() == "":
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _launcher_env() -> str | None:
  """The multi-process launcher that jax.distributed.initialize() detects by itself, if any.

  Only environments with more than one process count: a SLURM job step or `mpirun` with one task
  is a single process.
  """
  env = os.environ
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
  if all(k in env for k in slurm) and _env_int("SLURM_NTASKS") not in (None, 0, 1):
    return "SLURM"
  if "OMPI_MCA_orte_hnp_uri" in env and _env_int("OMPI_COMM_WORLD_SIZE") not in (None, 0, 1):
    return "Open MPI"
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
  if len([h for h in hosts.split(",") if h.strip()]) > 1:
    return "Cloud TPU (GKE)"
  return None


def _check_address(address: str) -> None:
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f"coordinator_address={address!r} is not 'host:port' with a port in 1..65535 "
                     "(e.g. '10.0.0.1:1234'; process 0's host, a port free on it)")


def _backends_initialized() -> bool:
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # private API moved: let jax.distributed raise instead.
    return False


def _set_local_device_count(local_device_count: int | None) -> None:
  if local_device_count is None:
    return
  if isinstance(local_device_count, bool) or not isinstance(local_device_count, int) \
      or local_device_count < 1:
    raise ValueError(f"local_device_count={local_device_count!r} must be a positive int")
  if _backends_initialized():
    if jax.local_device_count() != local_device_count:
      raise ValueError(
          f"local_device_count={local_device_count} but JAX is already running with "
          f"{jax.local_device_count()} local devices; call initialize() before any JAX computation")
    return
  jax.config.update("jax_num_cpu_devices", local_device_count)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_count: int | None = None, *,
               auto_detect: bool | None = None, initialization_timeout: int = 300,
               heartbeat_timeout_seconds: int = 100, shutdown_timeout_seconds: int = 300) -> bool:
  """Starts the multi-process JAX job this process belongs to, or does nothing for one process.

  Call it once per process, first thing, in every process of the job. Missing arguments are read
  from `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, then left to
  `jax.distributed.initialize()`'s own detection of SLURM, Open MPI and Cloud TPU on GKE (see the
  module docstring). Calling it again with the same (or no) arguments after a successful start
  returns True and changes nothing.

  Args:
    coordinator_address: `host:port` of process 0, where it serves the coordination service; every
      process passes the same value (the port must be free on process 0's host: a busy port crashes
      process 0 at once with "Failed to add port to server").
    num_processes: the number of processes of the job; 1 means no multi-process job.
    process_id: this process's index, in `0..num_processes-1`; process 0 hosts the coordinator.
    local_device_count: the number of CPU devices of this process (`jax_num_cpu_devices`); only the
      CPU backend reads it. `None` keeps JAX's default (one, or `XLA_FLAGS`'s
      `--xla_force_host_platform_device_count`).
    auto_detect: `None` (default): start a job from a detected SLURM, Open MPI or GKE TPU launcher
      when no address/count/id is given, else stay a single process. `True`: always call
      `jax.distributed.initialize()` and let JAX detect everything it can (needed on TPU VM pods,
      Kubernetes Jobs). `False`: never auto-detect; without arguments or environment, one process.
    initialization_timeout: seconds every process waits for all others to connect; past it JAX
      aborts the process (a C++ fatal error, not a Python exception).
    heartbeat_timeout_seconds: seconds after which a silent (dead) process is declared failed and
      the others abort.
    shutdown_timeout_seconds: seconds a process exiting normally waits for the others to exit too.

  Returns:
    True when this process is part of a started multi-process job, False for a single process.

  Raises:
    ValueError: inconsistent or malformed arguments or environment variables (one-line message).
    RuntimeError: a JAX backend was already initialized in this process before a multi-process
      start, or a job was already started with other arguments.
  """
  for name, value in (("num_processes", num_processes), ("process_id", process_id),
                      ("initialization_timeout", initialization_timeout),
                      ("heartbeat_timeout_seconds", heartbeat_timeout_seconds),
                      ("shutdown_timeout_seconds", shutdown_timeout_seconds)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
      raise ValueError(f"{name}={value!r} must be an int")
  sources = {}
  if coordinator_address is None and os.environ.get(ENV_COORDINATOR_ADDRESS):
    coordinator_address = os.environ[ENV_COORDINATOR_ADDRESS]
    sources["coordinator_address"] = ENV_COORDINATOR_ADDRESS
  if num_processes is None and (num_processes := _env_int(ENV_NUM_PROCESSES)) is not None:
    sources["num_processes"] = ENV_NUM_PROCESSES
  if process_id is None and (process_id := _env_int(ENV_PROCESS_ID)) is not None:
    sources["process_id"] = ENV_PROCESS_ID

  def name(arg):
    return f"{arg} (from {sources[arg]})" if arg in sources else arg

  if num_processes is not None and num_processes < 1:
    raise ValueError(f"{name('num_processes')}={num_processes} must be >= 1")
  if process_id is not None and process_id < 0:
    raise ValueError(f"{name('process_id')}={process_id} must be >= 0")
  if num_processes is not None and process_id is not None and process_id >= num_processes:
    raise ValueError(f"{name('process_id')}={process_id} must be < "
                     f"{name('num_processes')}={num_processes}")
  if coordinator_address is not None:
    _check_address(coordinator_address)

  if jax.distributed.is_initialized():
    from jax._src import distributed as jax_distributed  # the running job's arguments.
    state = jax_distributed.global_state
    current = {"coordinator_address": state.coordinator_address,
               "num_processes": state.num_processes, "process_id": state.process_id}
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
             "process_id": process_id}
    clash = [f"{k}={v!r} (running: {current[k]!r})" for k, v in given.items()
             if v is not None and v != current[k]]
    if clash:
      raise RuntimeError("jax.distributed is already running with other arguments: "
                         + ", ".join(clash))
    _set_local_device_count(local_device_count)
    return True

  if num_processes == 1:  # (process_id is None or 0, checked above)
    _set_local_device_count(local_device_count)
    return False

  given = [k for k, v in (("coordinator_address", coordinator_address),
                          ("num_processes", num_processes), ("process_id", process_id))
           if v is not None]
  launcher = _launcher_env() if auto_detect is not False else None
  if auto_detect is not True and launcher is None:
    if not given:
      _set_local_device_count(local_device_count)
      return False
    if len(given) < 3:
      missing = [k for k in ("coordinator_address", "num_processes", "process_id")
                 if k not in given]
      raise ValueError(
          f"a multi-process start needs coordinator_address, num_processes and process_id; "
          f"got {', '.join(name(k) for k in given)} but not {', '.join(missing)} (arguments or "
          f"{ENV_COORDINATOR_ADDRESS}/{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID}), and no SLURM/Open "
          "MPI/TPU launcher was detected")

  if _backends_initialized():
    raise RuntimeError("initialize() must run before any JAX computation, jax.devices() or "
                       "device_put in this process: a JAX backend is already initialized")
  _set_local_device_count(local_device_count)
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes,
      process_id=process_id, initialization_timeout=initialization_timeout,
      heartbeat_timeout_seconds=heartbeat_timeout_seconds,
      shutdown_timeout_seconds=shutdown_timeout_seconds)
  return True


def is_main_process() -> bool:
  """True in the process that should do the job's one-copy side effects (process index 0).

  Use it for files every process would otherwise write into a shared directory (logs, metrics,
  sample images, config.json), never around collective calls (jitted calls on global arrays,
  checkpoint saves), which every process must make.
  """
  return jax.process_index() == 0
