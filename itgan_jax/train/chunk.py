"""One jitted call = a chunk of training steps as one `lax.scan` (no per-step Python dispatch).

`make_chunk_fn` is what the loop runs; `compile_chunk` compiles one chunk ahead of time for
benchmarks, the profiler and tests (the compiled program, its HLO and cost analysis, and a call
that feeds it any epoch's plan). Step `t` of a chunk draws its randomness from
`fold_in(state.rng, state.step)`, so a chunk's result depends only on the state and the plan rows.
Both the chunk and `init_state` are traced under the experiment's matmul precision
(`exp.matmul_precision`, config.precision.matmul), so the compiled step carries it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax

from itgan_jax.train import precision as precision_lib
from itgan_jax.train import sharding as sharding_lib


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


def make_chunk_fn(exp, mesh, num_steps: int, *, phase: int = 0,
                  compiler_options: dict[str, Any] | None = None):
  """Jits `num_steps` steps of `exp.variant.phase_train_step(phase)` as one lax.scan.

  Returns `run(state, arrays, inputs) -> (state, metrics (num_steps,) per key)`, where `arrays`
  is `exp.feeder.put(mesh)` and `inputs` is `exp.feeder.chunk_inputs(plan rows, mesh)`. The state
  is donated (updated in place).
  """
  step_fn = exp.variant.phase_train_step(phase)
  feeder = exp.feeder
  matmul = getattr(exp, "matmul_precision", None)

  def body(state, inputs_row, *, arrays):
    batch = feeder.batch(arrays, inputs_row)
    batch = jax.lax.with_sharding_constraint(batch, sharding_lib.batch_sharded(mesh, 0))
    rng = jax.random.fold_in(state.rng, state.step)
    return step_fn(state, batch, rng)

  def run(state, arrays, inputs):
    with precision_lib.matmul_context(matmul):  # active while the step is traced
      return jax.lax.scan(functools.partial(body, arrays=arrays), state, inputs,
                          length=num_steps)

  repl = sharding_lib.replicated(mesh)
  return jax.jit(run, in_shardings=(repl, repl, sharding_lib.batch_sharded(mesh, 1)),
                 out_shardings=(repl, repl), donate_argnums=(0,),
                 compiler_options=compiler_options or None)


@dataclasses.dataclass
class CompiledChunk:
  """A compiled chunk of `num_steps` steps, ready to run on any epoch's plan rows.

  Attributes:
    compiled: the XLA executable (`.as_text()`, `.cost_analysis()`).
    arrays: the feeder's device arrays.
  """
  exp: Any
  mesh: Any
  num_steps: int
  compiled: Any
  arrays: Any

  def inputs(self, epoch: int, start: int = 0):
    plan = self.exp.epoch_plan(epoch)
    rows = {k: v[start:start + self.num_steps] for k, v in plan.items()}
    return self.exp.feeder.chunk_inputs(rows, self.mesh)

  def __call__(self, state, epoch: int = 0, start: int = 0):
    """Runs the chunk on rows `start:start + num_steps` of `epoch`'s plan (state donated)."""
    return self.compiled(state, self.arrays, self.inputs(epoch, start))


def init_state(exp, mesh, seed: int):
  """The fresh replicated state the loop starts from: `variant.init(fold_in(PRNGKey(seed), 0),
  exp.init_batch)`."""
  repl = sharding_lib.replicated(mesh)
  init_batch = sharding_lib.replicated_array(exp.init_batch, mesh)
  with precision_lib.matmul_context(getattr(exp, "matmul_precision", None)):
    return jax.jit(exp.variant.init, out_shardings=repl)(
        jax.random.fold_in(jax.random.PRNGKey(seed), 0), init_batch)


def compile_chunk(exp, mesh, state, num_steps: int, *, phase: int = 0,
                  compiler_options: dict[str, Any] | None = None) -> CompiledChunk:
  """Compiles `make_chunk_fn(...)` for `state` (not consumed) and epoch 0's plan shapes."""
  run = make_chunk_fn(exp, mesh, num_steps, phase=phase, compiler_options=compiler_options)
  arrays = exp.feeder.put(mesh)
  chunk = CompiledChunk(exp, mesh, num_steps, None, arrays)
  chunk.compiled = run.lower(state, arrays, chunk.inputs(0)).compile()
  return chunk
