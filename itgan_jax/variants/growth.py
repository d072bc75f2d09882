"""The progressive-growing schedule by images shown (ProGAN's level-of-detail formula).

Theano `train.py` / TF `training_schedule` (papers.md B.1, B.3; next_features.md 7.7): starting at
`initial_resolution`, each resolution is first *stabilised* for `stabilize_kimg` thousand real
images, then the next one is *faded in* over `fade_kimg`; after the last fade the full resolution
trains until the end. Inside a fade the blend factor rises linearly with the images shown before
the minibatch, alpha = (images - fade start) / fade images, in [0, 1); a stable phase has alpha 1.

Levels: level l works at 4 * 2^l pixels; the full resolution R is level L = log2(R) - 2.
Phases: (initial level, stable), (initial + 1, fade), (initial + 1, stable), ..., (L, stable);
the engine compiles one step per phase (`phase_starts`), alpha is traced inside it.
Image counts become steps by rounding up: steps = ceil(kimg * 1000 / batch_size) (exact for the
official 400k / 16 and 800k / 16).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

OPTIMIZER_RESETS = ("phase", "fade_start", "never")


@dataclasses.dataclass(frozen=True)
class Phase:
  """One compiled phase: the generator level, whether it fades in, its first step and length
  (None: until the end of training)."""
  level: int
  fading: bool
  start: int
  num_steps: int | None

  @property
  def resolution(self) -> int:
    return 4 * 2 ** self.level


def level_of(resolution: int) -> int:
  """4 -> 0, 8 -> 1, ...; a clear error for sides that are not powers of two >= 4."""
  if resolution < 4 or resolution & (resolution - 1):
    raise ValueError(f"resolution {resolution} must be a power of two >= 4 (progressive growing "
                     "doubles the image side from 4x4)")
  return int(math.log2(resolution)) - 2


def kimg_to_steps(kimg: float, batch_size: int, name: str) -> int:
  if kimg <= 0:
    raise ValueError(f"schedule.{name}={kimg} must be > 0 (thousands of real images)")
  return int(math.ceil(kimg * 1000 / batch_size - 1e-9))


@dataclasses.dataclass(frozen=True)
class GrowthSchedule:
  """Which phase and blend factor a step has.

  Attributes:
    resolution: the final image side R (power of two).
    initial_resolution: the side training starts at (official 4; R = no growing, Table 1 (a)).
    stabilize_steps, fade_steps: steps of each stable and fade phase.
    optimizer_reset: when Adam's moments restart: 'phase' (at every phase start, i.e. when a fade
      starts and when it ends: TF `reset_opt_for_new_lod`, and Theano, which rebuilds its Adam
      whenever min/max LOD change), 'fade_start' (once per new resolution), 'never'.
  """
  resolution: int
  initial_resolution: int
  stabilize_steps: int
  fade_steps: int
  optimizer_reset: str = "phase"

  def __post_init__(self):
    if level_of(self.initial_resolution) > level_of(self.resolution):
      raise ValueError(f"schedule.initial_resolution={self.initial_resolution} is above the "
                       f"image resolution {self.resolution}")
    if self.stabilize_steps < 1 or self.fade_steps < 1:
      raise ValueError("the stabilise and fade phases need at least one step each, got "
                       f"{self.stabilize_steps} and {self.fade_steps}")
    if self.optimizer_reset not in OPTIMIZER_RESETS:
      raise ValueError(f"optim.reset={self.optimizer_reset!r} is not one of {OPTIMIZER_RESETS}")

  @classmethod
  def from_kimg(cls, resolution: int, initial_resolution: int, stabilize_kimg: float,
                fade_kimg: float, batch_size: int, optimizer_reset: str = "phase"
                ) -> GrowthSchedule:
    return cls(resolution, initial_resolution, kimg_to_steps(stabilize_kimg, batch_size,
                                                             "stabilize_kimg"),
               kimg_to_steps(fade_kimg, batch_size, "fade_kimg"), optimizer_reset)

  @property
  def phases(self) -> tuple[Phase, ...]:
    first, last = level_of(self.initial_resolution), level_of(self.resolution)
    out, start = [], 0
    out.append(Phase(first, False, 0, self.stabilize_steps if first < last else None))
    start = self.stabilize_steps
    for level in range(first + 1, last + 1):
      out.append(Phase(level, True, start, self.fade_steps))
      start += self.fade_steps
      out.append(Phase(level, False, start, self.stabilize_steps if level < last else None))
      start += self.stabilize_steps
    return tuple(out)

  @property
  def phase_starts(self) -> tuple[int, ...]:
    """First step of every phase after the first (the engine's `phase_starts`)."""
    return tuple(p.start for p in self.phases[1:])

  def phase_at(self, step: int) -> int:
    """Index of the phase that step `step` (0-based) belongs to."""
    return sum(1 for s in self.phase_starts if s <= step)

  def alpha(self, phase: int, step):
    """The blend factor of `step` inside `phase` (jnp float32; traced steps allowed):
    (step - fade start) / fade steps in a fade, 1 in a stable phase."""
    p = self.phases[phase]
    if not p.fading:
      return jnp.ones([], jnp.float32)
    t = (jnp.asarray(step, jnp.float32) - p.start) / self.fade_steps
    return jnp.clip(t, 0.0, 1.0)

  def resets_optimizer(self, phase: int) -> bool:
    """Whether entering `phase` (>= 1) restarts Adam's moments."""
    if self.optimizer_reset == "never":
      return False
    return self.optimizer_reset == "phase" or self.phases[phase].fading

  def lod(self, phase: int, step):
    """Theano's level of detail: L - level + (1 - alpha) (0 = full resolution)."""
    p = self.phases[phase]
    return (level_of(self.resolution) - p.level) + (1.0 - self.alpha(phase, step))

  def describe(self, batch_size: int) -> str:
    """One line per phase: resolution, stable/fade, image range (for logs and docs)."""
    lines = []
    for p in self.phases:
      end = "end" if p.num_steps is None else f"{(p.start + p.num_steps) * batch_size:,}"
      kind = "fade-in" if p.fading else "stable"
      lines.append(f"{p.resolution}x{p.resolution} {kind}: images {p.start * batch_size:,} - {end}")
    return "\n".join(lines)
