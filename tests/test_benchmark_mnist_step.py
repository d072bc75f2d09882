"""The MNIST step benchmark's accounting: its FLOP count and its ceiling's workloads."""

from __future__ import annotations

import types

import jax
import pytest

from tests.helpers import load_script


@pytest.fixture(scope="module")
def bench():
  return load_script("benchmarks/mnist_step.py")


@pytest.fixture(scope="module")
def variant(bench, shared_data_dir):
  """The benchmark's compiled training chunk (2 iterations), shared by the tests."""
  return bench.prepare(types.SimpleNamespace(steps=2, data_dir=str(shared_data_dir)), {})


def test_analytic_flops_equal_the_compiled_chunks_dots(bench, variant):
  """The headline GFLOP/s uses the analytic count; it must be what the compiled step multiplies."""
  # Re-derived by hand from the official shapes (D 784-1000-500-250-250-250-10, G 100-500-500-784):
  d = [784 * 1000, 1000 * 500, 500 * 250, 250 * 250, 250 * 250, 250 * 10]
  g = [100 * 500, 500 * 500, 500 * 784]
  d_step = 2 * 100 * sum(g) + 2 * 300 * (sum(d) * 2 + sum(d[1:]))
  g_step = 2 * 100 * (sum(d[:5]) + sum(g) * 2 + sum(g[1:]) + sum(d[:5]) * 2)
  assert bench.analytic_flops_per_iteration(100) == d_step + g_step
  assert variant.hlo_dot_flops == d_step + g_step
  assert len(bench.dots_in_hlo(variant.compiled.as_text())) == 43


def test_ceiling_workloads_match_the_step(bench, variant):
  """The noise and update workloads timed alone are the step's: 1.467M normals, 2.23M params."""
  noise = bench.time_noise(variant.exp.variant.discriminator, 784, 100, steps=2)
  widths = [784, 1000, 500, 250, 250, 250]
  assert noise.count == 300 * sum(widths) + 2 * 100 * sum(widths[:5]) == 1_467_000
  assert noise() > 0
  updates = bench.time_updates(variant.exp.variant, variant.state, steps=2)
  n_params = sum(x.size for x in jax.tree.leaves((variant.state.d.params, variant.state.g.params)))
  assert updates.size == n_params
  assert 2.2e6 < n_params < 2.3e6
  before = jax.tree.leaves(updates.carry[0].params)[0].copy()
  assert updates() > 0
  assert (jax.tree.leaves(updates.carry[0].params)[0] != before).any()  # the updates ran
