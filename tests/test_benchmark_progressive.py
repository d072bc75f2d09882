"""benchmarks/progressive_step.py: how a run's steps split over the growth phases."""

from __future__ import annotations

import pytest

from itgan_jax.variants import growth
from tests.helpers import load_script


@pytest.fixture(scope="module")
def bench():
  return load_script("benchmarks/progressive_step.py")


def test_phase_steps_of_the_cifar_schedule(bench):
  schedule = growth.GrowthSchedule.from_kimg(32, 4, 400, 400, 16)
  steps = bench.phase_steps(schedule, 1_250_000)        # 20M images of 16
  assert steps == [25_000] * 6 + [1_100_000] and sum(steps) == 1_250_000
  assert bench.phase_steps(schedule, 60_000) == [25_000, 25_000, 10_000, 0, 0, 0, 0]
