"""One jitted call = a chunk of training steps as one `lax.scan` (no per-step Python dispatch).

`make_chunk_fn` is what the loop runs; `compile_chunk` compiles one chunk ahead of time for
benchmarks, the profiler and tests (the compiled program, its HLO and cost analysis, and a call
that feeds it any epoch's plan). Step `t` of a chunk draws its randomness from
`fold_in(state.rng, state.step)`, so a chunk's result depends only on the state and the plan rows.
Both the chunk and `init_state` are traced under the experiment's matmul precision
(`exp.matmul_precision`, config.precision.matmul), so the compiled step carries it.

The state is placed as `state_sharding(exp, mesh, phase)` says: replicated over the mesh, unless
the variant has the optional hook `state_sharding(abstract_state, mesh)` and it returns shardings
(RP-GAN's `k_strategy='shard'`: D's stacked leaves split along K). The loop uses the same
placement for the initial state, every chunk, `enter_phase` and checkpoint restores.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
from jax.sharding import NamedSharding

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


def abstract_state(exp, phase: int, seed: int = 0):
  """Shapes and dtypes of the state in `phase` (init, then each phase transform), nothing run."""
  def build(rng, init_batch):
    state = exp.variant.init(rng, init_batch)
    for p in range(1, phase + 1):
      state = exp.variant.enter_phase(state, p)
    return state
  return jax.eval_shape(build, jax.random.PRNGKey(seed), exp.init_batch)


def state_sharding(exp, mesh, phase: int = 0, template=None):
  """Where the training state of `phase` lives on `mesh`: `sharding.replicated(mesh)` (one
  sharding for every leaf, exactly the placement of a variant without the hook), or, when the
  variant defines `state_sharding(abstract_state, mesh)` and it returns a pytree (not None), that
  pytree of NamedShardings broadcast to one per leaf of the state (a tree prefix is accepted).
  `template`: the phase's `abstract_state` where the caller already has it (not traced again).

  Raises:
    ValueError: the hook's answer does not fit the state's structure, or a leaf is not a
      NamedSharding over `mesh`.
  """
  repl = sharding_lib.replicated(mesh)
  hook = getattr(exp.variant, "state_sharding", None)
  if hook is None:
    return repl
  template = abstract_state(exp, phase) if template is None else template
  shardings = hook(template, mesh)
  if shardings is None:
    return repl
  name = f"{type(exp.variant).__name__}.state_sharding"

  def broadcast(sharding, subtree):
    if not isinstance(sharding, NamedSharding) or sharding.mesh != mesh:
      raise ValueError(f"{name} returned {sharding!r}; every leaf must be a "
                       f"jax.sharding.NamedSharding over the loop's mesh {mesh}")
    return jax.tree.map(lambda _: sharding, subtree)
  try:
    return jax.tree.map(broadcast, shardings, template,
                        is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  except ValueError as e:
    if str(e).startswith(name):
      raise
    raise ValueError(f"{name} returned a pytree that does not match the structure of the "
                     f"phase-{phase} state ({e}); return one NamedSharding per state leaf (or "
                     "for a subtree), or None for a replicated state") from None


def make_chunk_fn(exp, mesh, num_steps: int, *, phase: int = 0,
                  compiler_options: dict[str, Any] | None = None):
  """Jits `num_steps` steps of `exp.variant.phase_train_step(phase)` as one lax.scan.

  Returns `run(state, arrays, inputs) -> (state, metrics (num_steps,) per key)`, where `arrays`
  is `exp.feeder.put(mesh)` and `inputs` is `exp.feeder.chunk_inputs(plan rows, mesh)`. The state
  is donated (updated in place) and placed as `state_sharding(exp, mesh, phase)`, in and out.
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
  placed = state_sharding(exp, mesh, phase)
  return jax.jit(run, in_shardings=(placed, repl, sharding_lib.batch_sharded(mesh, 1)),
                 out_shardings=(placed, repl), donate_argnums=(0,),
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
  """The fresh state the loop starts from: `variant.init(fold_in(PRNGKey(seed), 0),
  exp.init_batch)`, placed as `state_sharding(exp, mesh)` (replicated without the hook)."""
  init_batch = sharding_lib.replicated_array(exp.init_batch, mesh)
  with precision_lib.matmul_context(getattr(exp, "matmul_precision", None)):
    return jax.jit(exp.variant.init, out_shardings=state_sharding(exp, mesh))(
        jax.random.fold_in(jax.random.PRNGKey(seed), 0), init_batch)


def compile_chunk(exp, mesh, state, num_steps: int, *, phase: int = 0,
                  compiler_options: dict[str, Any] | None = None) -> CompiledChunk:
  """Compiles `make_chunk_fn(...)` for `state` (not consumed) and epoch 0's plan shapes."""
  run = make_chunk_fn(exp, mesh, num_steps, phase=phase, compiler_options=compiler_options)
  arrays = exp.feeder.put(mesh)
  chunk = CompiledChunk(exp, mesh, num_steps, None, arrays)
  chunk.compiled = run.lower(state, arrays, chunk.inputs(0)).compile()
  return chunk
