"""The CIFAR step benchmark's FLOP accounting on compiled convolutions (against brute force)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itgan_jax.nn import conv as conv_lib
from tests.helpers import load_script


@pytest.fixture(scope="module")
def bench():
  return load_script("benchmarks/cifar_step.py")


def _real_macs(n, size, k, stride, pad, cin, cout):
  """Brute force: multiply-adds of a strided, padded conv whose input element is not padding."""
  out = (size + 2 * pad - k) // stride + 1
  count = 0
  for i in range(out):
    for j in range(out):
      for a in range(k):
        for b in range(k):
          u, v = i * stride + a - pad, j * stride + b - pad
          count += 0 <= u < size and 0 <= v < size
  return n * count * cin * cout


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 1), (1, 0)])
def test_conv_flops_of_forward_and_both_gradients(bench, stride, pad):
  """Every real multiply-add (x, w, y) of the forward conv appears exactly once in dx and once in
  dw, so the accelerator program of grad(x, w) counts 3x the forward's real multiply-adds."""
  x, w = jnp.ones((2, 9, 9, 3)), jnp.ones((3, 3, 3, 5))
  padding = ((pad, pad), (pad, pad))
  fwd = lambda x, w: conv_lib.conv2d(x, w, (stride, stride), padding)  # noqa: E731
  loss = lambda x, w: jnp.sum(fwd(x, w) ** 2)  # noqa: E731
  macs = _real_macs(2, 9, 3, stride, pad, 3, 5)
  assert bench.conv_flops_in_hlo(jax.jit(fwd).lower(x, w).compile().as_text()) == 2 * macs
  with conv_lib.accelerator_gradients():
    hlo = jax.jit(jax.grad(loss, (0, 1))).lower(x, w).compile().as_text()
  assert bench.program_flops(hlo) == 3 * 2 * macs
  cpu = bench.program_flops(jax.jit(jax.grad(loss, (0, 1))).lower(x, w).compile().as_text())
  assert cpu >= 3 * 2 * macs  # our CPU VJP multiplies dilation zeros and padding too
  assert (cpu > 3 * 2 * macs) == (stride > 1 or pad > 0)


def test_valid_taps_counts_lhs_dilation_holes_out(bench):
  # A transposed conv: input 3 dilated by 2 (5 positions, 3 real), kernel 3, pads 1, output 5.
  dense = sum(0 <= o + k - 1 < 5 and (o + k - 1) % 2 == 0 for o in range(5) for k in range(3))
  assert bench.valid_taps(5, 3, 1, 1, 2, 1, 3) == dense == 7
  np.testing.assert_equal(bench.valid_taps(4, 3, 1, 0, 1, 1, 6), 12)
