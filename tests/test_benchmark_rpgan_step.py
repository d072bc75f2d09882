"""benchmarks/rpgan_step.py: FLOPs of the K-stacked (grouped) convolutions, its table, a smoke run."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest

from itgan_jax.nn import conv as conv_lib
from tests.helpers import load_script


def _load(name):
  return load_script(f"benchmarks/{name}.py")


@pytest.fixture(scope="module")
def bench():
  return _load("rpgan_step")


def _real_macs(n, size, k, stride, pad, cin, cout):
  """Brute force: multiply-adds of a strided, padded conv that read a real input element."""
  out = (size + 2 * pad - k) // stride + 1
  taps = sum(0 <= i * stride + a - pad < size and 0 <= j * stride + b - pad < size
             for i in range(out) for j in range(out) for a in range(k) for b in range(k))
  return n * taps * cin * cout


def test_vmapped_discriminator_convolutions_are_counted_once_per_discriminator():
  """vmap over K weight sets lowers to grouped convolutions (feature_group_count = K; the weight
  gradient to a batch-grouped one): the accelerator program of grad(x, w) has 3 x K x the real
  multiply-adds of one discriminator's forward conv, as K separate convolutions would."""
  count = _load("cifar_step").program_flops
  k = 3
  x, w = jnp.ones((k, 2, 8, 8, 2)), jnp.ones((k, 4, 4, 2, 5))
  fwd = jax.vmap(lambda x, w: conv_lib.conv2d(x, w, (2, 2), ((1, 1), (1, 1))))
  macs = k * _real_macs(2, 8, 4, 2, 1, 2, 5)
  hlo = jax.jit(fwd).lower(x, w).compile().as_text()
  assert "feature_group_count=3" in hlo and count(hlo) == 2 * macs
  with conv_lib.accelerator_gradients():
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(fwd(x, w) ** 2), (0, 1)))
    assert count(grad.lower(x, w).compile().as_text()) == 3 * 2 * macs


def test_table_reports_the_ratio_to_k_single_discriminator_iterations(bench, capsys):
  single = dict(k=1, strategy="vmap", ms=10.0, accel=1e9, cpu=2e9, xla=3e9)
  rows = [dict(k=4, strategy="vmap", ms=20.0, accel=4e9, cpu=5e9, xla=6e9),
          dict(k=4, strategy="map", ms=30.0, accel=4e9, cpu=5e9, xla=6e9),
          dict(k=8, strategy="map", ms=math.nan, accel=8e9, cpu=9e9, xla=9e9)]
  bench._print_table(rows, single)
  out = capsys.readouterr().out
  assert "| 4 | vmap | 20.0 | 0.50 | 4.00 | 5.00 | 6.00 |" in out
  assert "| 4 | map | 30.0 | 0.75 |" in out
  assert "fastest: K=4: vmap" in out and "K=8" not in out.split("fastest")[1]
  with pytest.raises(SystemExit, match="--ks must be >= 1"):
    bench._parse(["--ks", "0"])


@pytest.mark.slow
def test_smoke_run_on_the_tiny_config(bench, rbg_prng):
  rows = bench.main(["--config", "configs/cifar10_rpgan.py:tiny", "--ks", "2", "--strategies",
                     "vmap", "--steps", "1", "--repeats", "1", "--no_accel_flops"])
  assert [(r["k"], r["strategy"]) for r in rows] == [(2, "vmap")]
  assert rows[0]["ms"] > 0 and rows[0]["cpu"] > 0
