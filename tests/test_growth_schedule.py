"""The progressive-growing schedule: phases, alpha and optimizer resets by images shown."""

from __future__ import annotations

import numpy as np
import pytest

from itgan_jax.variants import growth


def _cifar():
  # Theano CIFAR-10: 400k stable + 400k fade per resolution, minibatch 16 (papers.md B.1).
  return growth.GrowthSchedule.from_kimg(32, 4, 400, 400, 16)


def test_cifar_phases_follow_the_theano_lod_formula():
  s = _cifar()
  assert [(p.resolution, p.fading) for p in s.phases] == [
      (4, False), (8, True), (8, False), (16, True), (16, False), (32, True), (32, False)]
  assert s.phase_starts == (25_000, 50_000, 75_000, 100_000, 125_000, 150_000)
  # papers.md B.1: 8x8 fades in 0.4-0.8M images, 16x16 in 1.2-1.6M, 32x32 in 2.0-2.4M.
  for images, res, fading in [(399_984, 4, False), (400_000, 8, True), (1_200_000, 16, True),
                              (1_599_984, 16, True), (1_600_000, 16, False),
                              (2_400_000, 32, False), (20_000_000, 32, False)]:
    p = s.phases[s.phase_at(images // 16)]
    assert (p.resolution, p.fading) == (res, fading), images


def test_alpha_rises_linearly_with_images_inside_a_fade():
  s = _cifar()
  fade = s.phase_at(1_200_000 // 16)
  for images in (1_200_000, 1_300_000, 1_500_000, 1_599_984):
    want = (images - 1_200_000) / 400_000
    np.testing.assert_allclose(float(s.alpha(fade, images // 16)), want, rtol=1e-6)
  assert float(s.alpha(0, 3)) == 1.0 and float(s.alpha(2, 60_000)) == 1.0
  np.testing.assert_allclose(float(s.lod(fade, 1_300_000 // 16)), 1 + 0.75)
  assert float(s.lod(6, 10**6)) == 0.0


def test_optimizer_reset_rules():
  phase = growth.GrowthSchedule(32, 4, 10, 10, "phase")
  fade_start = growth.GrowthSchedule(32, 4, 10, 10, "fade_start")
  never = growth.GrowthSchedule(32, 4, 10, 10, "never")
  assert [phase.resets_optimizer(p) for p in range(1, 7)] == [True] * 6
  assert [fade_start.resets_optimizer(p) for p in range(1, 7)] == [True, False] * 3
  assert not any(never.resets_optimizer(p) for p in range(1, 7))


def test_no_growing_and_rounding():
  s = growth.GrowthSchedule.from_kimg(128, 128, 800, 800, 64)
  assert len(s.phases) == 1 and s.phase_starts == () and s.phases[0].level == 5
  assert growth.kimg_to_steps(0.1, 16, "x") == 7      # 100 images / 16 rounds up
  assert growth.kimg_to_steps(400, 16, "x") == 25_000
  assert "8x8 fade-in: images 400,000 - 800,000" in _cifar().describe(16)


@pytest.mark.parametrize("kwargs, match", [
    (dict(resolution=24), "power of two"),
    (dict(initial_resolution=64), "above the image resolution"),
    (dict(fade_steps=0), "at least one step"),
    (dict(optimizer_reset="sometimes"), "optim.reset"),
])
def test_bad_schedules_are_clear_errors(kwargs, match):
  args = dict(resolution=32, initial_resolution=4, stabilize_steps=5, fade_steps=5)
  with pytest.raises(ValueError, match=match):
    growth.GrowthSchedule(**{**args, **kwargs})
