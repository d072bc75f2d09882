r"""Where the MNIST iteration's time goes: thread time per XLA:CPU op, grouped by kind.

Compiles the real training chunk (as `benchmarks/mnist_step.py`), traces one chunk with
`jax.profiler`, and sums the duration of every executed op (thunk) event of XLA's worker threads
per iteration. Ops are grouped as: fusions containing a dot (and plain dots), kernel-shaped
elementwise (output shaped like a weight matrix: optimizer, EMA, weight-norm gradient), activation-
shaped elementwise (batch rows: noise, masks, biases), carry copies, and the rest (reductions,
loop control). XLA may run two ops at once, one per core, so the total can exceed the wall time.

  python benchmarks/profile_mnist_step.py [--steps 100] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import sys
import tempfile

import jax

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import mnist_step  # noqa: E402  (sets up the repository path too)

def op_kinds(hlo_text: str, kernel_shapes: set[tuple[int, ...]], batch_rows: set[int]
             ) -> dict[str, str]:
  """Op name -> group, from the compiled module's text; `kernel_shapes` are the weight matrices'
  shapes, `batch_rows` the row counts of activations."""
  bodies, current = {}, None
  for line in hlo_text.splitlines():
    m = re.match(r"^(?:ENTRY )?%(\S+) ", line)
    if m:
      current = m.group(1)
      bodies[current] = []
    elif current:
      bodies[current].append(line)
  kinds = {}
  for line in hlo_text.splitlines():
    m = re.match(r"\s*(?:ROOT )?%(\S+) = \(?(\w+)\[([\d,]*)\]", line)
    if not m:
      continue
    name, shape = m.group(1), tuple(int(d) for d in m.group(3).split(",") if d)
    calls = re.search(r"calls=%([^,\s}]+)", line)
    if " dot(" in line or (calls and any(" dot(" in l for l in bodies.get(calls.group(1), []))):
      kinds[name] = "dots (incl. fused elementwise)"
    elif " copy(" in line:
      kinds[name] = "copies"
    elif shape in kernel_shapes:
      kinds[name] = "kernel-shaped elementwise"
    elif len(shape) >= 2 and shape[0] in batch_rows:
      kinds[name] = "activation-shaped elementwise"
    else:
      kinds[name] = "other (reductions, loop control)"
  return kinds


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=100, help="iterations of the traced chunk")
  parser.add_argument("--top", type=int, default=25, help="also list the costliest ops")
  parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
  args = parser.parse_args()

  variant = mnist_step.prepare(args, {})
  wall = min(variant.time_chunk(epoch) for epoch in (1, 2))
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    variant.time_chunk(3)
    jax.profiler.stop_trace()
    trace = next(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
    profile = jax.profiler.ProfileData.from_file(str(trace))
  per_op = collections.Counter()
  for plane in profile.planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLAEigen"):  # XLA:CPU's worker threads
        continue
      for event in line.events:
        per_op[event.name] += event.duration_ns
  params = (variant.state.d.params, variant.state.g.params)
  batch = variant.exp.variant.batch_size
  kinds = op_kinds(variant.compiled.as_text(),
                   {x.shape for x in jax.tree.leaves(params) if x.ndim == 2},
                   {batch, 2 * batch, 3 * batch})
  groups = collections.Counter()
  for name, ns in per_op.items():
    if name in kinds:
      groups[kinds[name]] += ns
  scale = 1e6 * args.steps
  print(f"iteration: {wall:.2f} ms wall (untraced chunks of {args.steps} iterations)")
  print(f"thread time of the ops, ms per iteration (sum {sum(groups.values()) / scale:.2f}):")
  for group, ns in groups.most_common():
    print(f"  {ns / scale:7.2f}  {group}")
  print("costliest ops, ms per iteration:")
  for name, ns in collections.Counter({n: t for n, t in per_op.items() if n in kinds}
                                      ).most_common(args.top):
    print(f"  {ns / scale:7.3f}  {name:36s} {kinds[name]}")


if __name__ == "__main__":
  main()
