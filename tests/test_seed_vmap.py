"""`train.num_seeds`: N seeds trained as one vmapped program equal N separate runs.

The tiny MNIST config (100 labels), 2 subsets (seed = seed_data = 1 and 2), 2 epochs of 4 steps,
laid out as a table cell (itgan_jax/table.py) both ways: two separate runs, and one vmapped run
trained for one epoch and then resumed to two. Compared: states, training metrics, test errors,
the table's summary and ensemble.

Not bit for bit: the vmapped program batches the matrix products and reductions, which XLA:CPU
may sum in another order, so one step agrees to rounding (2.4e-7 on the parameters, 5e-7 on D's
features). Such differences can be amplified: a ReLU pre-activation within rounding of zero
switches its derivative, and Adam (eps 1e-8 inside the sqrt, second moments ~4e-8 in these early
steps) turns the small gradient change into a parameter change of up to ~lr/10. With 100 labels
both seeds stay within 5e-7 over the 8 steps, so the whole-run comparison uses 100 labels and
allows 1e-5. With 20 labels, seed 1's step 3 moves G's parameters 1.7e-4 apart even from one
and the same state (its D agrees to 1e-6), and the runs then drift to 2e-2 by step 8;
`test_each_vmapped_step_equals_the_separate_steps` checks that trajectory step by step from the
separate runs' states: D's forward metrics to rtol 1e-5, the state to lr/10 = 3e-4. Everything
runs on one device (two separate runs of one seed on 1 and 4 devices also end 1e-2 apart).
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from itgan_jax import evaluate, experiment, table
from itgan_jax.train import run_config, seed_vmap
from tests.helpers import load_config

SEEDS = (1, 2)


def _tiny(shared_data_dir, **overrides):
  return load_config("mnist_ssl", "tiny,labels=100",
                     **{"data.dir": str(shared_data_dir), "num_devices": 1, "log.progress": False,
                        "log.print_epochs": False, "evals.test_error.max_examples": 2000,
                        **overrides})


def _records(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cells(shared_data_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("cells")

  def cell(vmap, **overrides):
    return table.Cell(config=_tiny(shared_data_dir, **overrides), subsets=len(SEEDS), root=root,
                      name="tiny", vmap=vmap)
  separate = cell(False)
  table.train(separate)
  steps = []
  table.train(cell(True, **{"train.num_epochs": 1}), chunk_callback=steps.append)
  vmapped = cell(True)
  table.train(vmapped, chunk_callback=steps.append)
  return separate, vmapped, steps


@pytest.mark.slow  # three tiny runs: ~50 s of CPU
def test_vmapped_state_equals_separate_runs(cells):
  separate, vmapped, steps = cells
  assert steps == [2, 4, 6, 8]  # epoch 2 resumed from the epoch-1 checkpoint
  _, exp, stacked, step = evaluate.load_run(vmapped.vmapped_workdir)
  assert isinstance(stacked, seed_vmap.SeedStack) and step == 8
  for i, seed in enumerate(SEEDS):
    _, _, own, _ = evaluate.load_run(separate.workdir(seed))
    member = seed_vmap.member_state(jax.device_get(stacked), i)
    leaves_a, tree_a = jax.tree.flatten(member)
    leaves_b, tree_b = jax.tree.flatten(jax.device_get(own))
    assert tree_a == tree_b
    for a, b in zip(leaves_a, leaves_b):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5)


@pytest.mark.slow  # three tiny runs: ~50 s of CPU
def test_vmapped_metrics_equal_separate_runs(cells):
  separate, vmapped, _ = cells
  mine = _records(vmapped.vmapped_workdir)
  assert [r["epoch"] for r in mine] == [1, 2]
  for seed in SEEDS:
    theirs = _records(separate.workdir(seed))
    for a, b in zip(mine, theirs):
      for key in ("loss_lab", "loss_unl", "loss_gen", "train_err", "d_real", "d_fake"):
        np.testing.assert_allclose(a[f"{key}_seed{seed}"], b[key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
      for key in ("test_errors_ema", "test_errors_raw"):  # one flip allowed (rounding, above)
        assert abs(a[f"{key}_seed{seed}"] - b[key]) <= 1, (key, a, b)
  for key in ("test_errors_ema", "loss_gen"):
    assert mine[-1][key] == pytest.approx(np.mean([mine[-1][f"{key}_seed{s}"] for s in SEEDS]))
  assert (vmapped.vmapped_workdir / "samples_seed2" / "epoch_0002.png").exists()


@pytest.mark.slow  # three tiny runs: ~50 s of CPU
def test_table_reads_a_vmapped_cell_like_separate_runs(cells):
  separate, vmapped, _ = cells
  subsets = {c.vmap: table.status(c) for c in (separate, vmapped)}
  assert [(s.seed, s.member, s.finished) for s in subsets[True]] == [(1, 0, True), (2, 1, True)]
  ours = {v: table.summarize(s) for v, s in subsets.items()}
  ensembles = {c.vmap: table.ensemble(c, subsets[c.vmap]) for c in (separate, vmapped)}
  for params in table.PARAMS:
    a, b = ours[True][params]["errors"]["values"], ours[False][params]["errors"]["values"]
    assert np.max(np.abs(np.subtract(a, b))) <= 1
    assert abs(ensembles[True][params]["errors"] - ensembles[False][params]["errors"]) <= 1
    assert ensembles[True][params]["member_errors"] == ensembles[True][params]["logged_errors"]


def _max_difference(a, b) -> float:
  leaves_a, tree_a = jax.tree.flatten(jax.device_get(a))
  leaves_b, tree_b = jax.tree.flatten(jax.device_get(b))
  assert tree_a == tree_b
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(leaves_a, leaves_b) if np.size(x))


def test_each_vmapped_step_equals_the_separate_steps(shared_data_dir):
  """Init, then 8 steps of a 20-label trajectory: every vmapped step starts from the separate
  runs' states (stacked) and must land on their next states: D's metrics to rounding, the state
  within lr/10 (Adam's amplification, module docstring)."""
  configs = [_tiny(shared_data_dir, seed=s, **{"data.seed_data": s, "data.num_labeled": 20})
             for s in SEEDS]
  vmapped = experiment.build(_tiny(shared_data_dir, **{"train.num_seeds": len(SEEDS),
                                                       "data.num_labeled": 20}))
  own = [experiment.build(c) for c in configs]
  stacked = jax.jit(vmapped.variant.init)(jax.random.PRNGKey(0), vmapped.init_batch)
  states = [jax.jit(e.variant.init)(jax.random.fold_in(jax.random.PRNGKey(s), 0), e.init_batch)
            for e, s in zip(own, SEEDS)]
  for i in range(len(SEEDS)):
    assert _max_difference(seed_vmap.member_state(stacked, i), states[i]) < 1e-5
  arrays = own[0].feeder.put(None)
  steps = [jax.jit(e.variant.train_step) for e in own]
  vstep = jax.jit(vmapped.variant.train_step)
  for t in range(8):
    epoch, row = divmod(t, own[0].steps_per_epoch)
    plan = vmapped.epoch_plan(epoch)
    batch = vmapped.feeder.batch(arrays, {k: v[row] for k, v in plan.items()})
    start = seed_vmap.SeedStack(jax.tree.map(lambda *x: jax.numpy.stack(x), *states))
    nxt, metrics = vstep(start, batch, jax.random.PRNGKey(0))
    for i, (e, seed) in enumerate(zip(own, SEEDS)):
      own_plan = e.epoch_plan(epoch)
      np.testing.assert_array_equal(own_plan["lab"][row], plan["lab"][row, :, i])
      own_batch = e.feeder.batch(arrays, {k: v[row] for k, v in own_plan.items()})
      s = states[i]
      states[i], own_metrics = steps[i](s, own_batch, jax.random.fold_in(s.rng, s.step))
      assert _max_difference(seed_vmap.member_state(nxt, i), states[i]) < 3e-4, (t, seed)
      for key in ("loss_lab", "loss_unl", "d_real", "d_fake", "train_err"):
        np.testing.assert_allclose(metrics[f"{key}_seed{seed}"], own_metrics[key], rtol=1e-5,
                                   atol=1e-7, err_msg=f"{key} step {t}")
      np.testing.assert_allclose(metrics[f"loss_gen_seed{seed}"], own_metrics["loss_gen"],
                                 rtol=1e-3)


def test_num_seeds_must_be_positive(shared_data_dir):
  with pytest.raises(ValueError, match="train.num_seeds=0 must be an integer >= 1"):
    experiment.validate(_tiny(shared_data_dir, **{"train.num_seeds": 0}))


@pytest.mark.parametrize("level", ["highest", "default"])
def test_vmapped_experiment_keeps_the_matmul_precision(shared_data_dir, level):
  """The loop traces under exp.matmul_precision: the stacked experiment must carry the members'
  (a lost value would silently mean XLA's TF32 / bf16 defaults on GPU / TPU)."""
  exp = experiment.build(_tiny(shared_data_dir, **{"train.num_seeds": 2,
                                                   "precision.matmul": level}))
  assert isinstance(exp.variant, seed_vmap.SeedVmap)
  assert exp.matmul_precision == level


def test_member_state_refuses_an_index_outside_the_stack():
  """JAX indexing clamps x[5] of a 3-row array to x[2]; member_state must say so instead."""
  stack = seed_vmap.SeedStack(members={"w": np.arange(6.0).reshape(3, 2), "b": np.zeros((3,))})
  np.testing.assert_array_equal(seed_vmap.member_state(stack, 2)["w"], [4.0, 5.0])
  np.testing.assert_array_equal(seed_vmap.member_state(stack, -3)["w"], [0.0, 1.0])
  for index in (3, -4):
    with pytest.raises(IndexError, match=f"member {index} is out of range: this state stacks 3 seeds"):
      seed_vmap.member_state(stack, index)
  sliced = jax.jit(seed_vmap.member_state, static_argnums=(1,))
  with pytest.raises(IndexError, match="stacks 3 seeds"):
    sliced(jax.tree.map(jax.numpy.asarray, stack), 5)


def test_member_config_shifts_both_seeds(shared_data_dir):
  config = _tiny(shared_data_dir, seed=5, **{"data.seed_data": 7, "train.num_seeds": 3})
  member = experiment.member_config(config, 2)
  assert (member.seed, member.data.seed_data, member.train.num_seeds) == (7, 9, 1)
  assert (config.seed, config.data.seed_data) == (5, 7)


def test_runs_stored_before_num_seeds_equal_its_default():
  stored = {"train": {"batch_size": 100}}  # a config.json written before the key existed
  assert run_config.differences(stored, {"train": {"batch_size": 100, "num_seeds": 1}}) == {}
  assert run_config.differences(stored, {"train": {"batch_size": 100, "num_seeds": 3}}) == {
      "train.num_seeds": (1, 3)}


def test_evaluate_refuses_a_vmapped_run_with_a_clear_error(shared_data_dir, tmp_path):
  run_config.write(tmp_path, _tiny(shared_data_dir, **{"train.num_seeds": 2}))
  with pytest.raises(ValueError, match="trains 2 seeds as one program"):
    evaluate.run(evaluate.EvalArgs(workdir=str(tmp_path), metrics="swd"))


def test_both_feeders_gather_each_seeds_batches(shared_data_dir):
  """The stacked plan (steps, batch, N) gives (batch, N, ...) batches, seed i's from its own plan,
  on the device feeder and on the host feeder (several processes) alike."""
  from itgan_jax.train import sharding  # pylint: disable=import-outside-toplevel
  mesh = sharding.make_mesh(1)
  exps = {kind: experiment.build(_tiny(shared_data_dir, **{"train.num_seeds": 2,
                                                           "data.feeder": kind}))
          for kind in ("device", "host")}
  plan = {k: v[:2] for k, v in exps["device"].epoch_plan(1).items()}
  own = experiment.build(_tiny(shared_data_dir, seed=2, **{"data.seed_data": 2}))
  own_plan = own.epoch_plan(1)
  batches = {}
  for kind, exp in exps.items():
    inputs = exp.feeder.chunk_inputs(plan, mesh)
    batches[kind] = exp.feeder.batch(exp.feeder.put(mesh), {k: v[1] for k, v in inputs.items()})
  for key, value in batches["device"].items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(batches["host"][key]))
  assert batches["device"]["x_lab"].shape == (100, 2, 28, 28, 1)
  np.testing.assert_array_equal(np.asarray(batches["device"]["y_lab"])[:, 1],
                                own.dataset.train_y[own_plan["lab"][1]])
