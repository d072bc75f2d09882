"""Virtual batch normalisation (Salimans et al. 2016, Sec. 3.5; improved-gan imagenet/model.py).

Every call receives the reference rows and the live rows stacked, x = concat(ref (R rows), live), so
the reference statistics are recomputed at every step with the current weights and gradients flow
through them (the paper's mode; the cost is one extra forward pass on R rows). Per channel c:
  mu_ref = mean_{n,h,w} ref,   s_ref = mean_{n,h,w} ref^2          (reference rows use only these)
  live example i: mu_i = mean_{h,w} x_i,   s_i = mean_{h,w} x_i^2
  mu = mu_i / (R + 1) + R / (R + 1) mu_ref,   s = s_i / (R + 1) + R / (R + 1) s_ref
  y = (x - mu) / sqrt(eps + s - mu^2) * gamma + beta,   eps = 1e-5
Variants: 'vbn' gamma ~ N(1, 0.02), beta = 0; 'vbnl' gamma = exp(g), g ~ N(0, 0.02); 'vbnlp'
per-pixel statistics (over the batch axis only) with log-gamma and beta of shape H x W x C.
`live_stats='paper_era_batch'` reproduces the statistics of the code at paper time, where the live
mean and mean square were averaged over the whole live batch (fixed in 9ff96a7 / e0e5ffc).

How a network threads its reference batch (one call, static sizes, jit/sharding friendly): the
network's input is prefixed with R fixed reference rows by `with_reference` (the rows are created
once at `init` in the non-trainable `vbn_ref` collection from the `vbn` rng stream, official
`make_z(is_ref=True)`), every layer processes the R + N rows together and every VBN layer reads
rows [:R] as the reference, so the reference pass costs one extra forward pass on R rows and its
statistics carry gradients; the network drops the first R rows of its output. Under data-parallel
jit the reference rows are replicated constants; the statistics of the live rows never mix examples.
A bfloat16 input (config.precision.compute_dtype) is normalised in float32 (the variance is
s - mu^2, a difference that bfloat16 would cancel) and the result cast back.
Not implemented: the official `half=1/2` option (reference statistics from one half of the
reference batch), unused by the published generators.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

VARIANTS = ("vbn", "vbnl", "vbnlp")
LIVE_STATS = ("per_example", "paper_era_batch")


def make_reference_batch(rng: jax.Array, shape: tuple[int, ...], dist: str = "uniform_pm1"
                         ) -> jax.Array:
  """The fixed reference latent batch, drawn once (official `make_z(is_ref=True)`: U(-1, 1))."""
  if dist == "uniform_pm1":
    return jax.random.uniform(rng, shape, jnp.float32, -1.0, 1.0)
  if dist == "uniform01":
    return jax.random.uniform(rng, shape, jnp.float32)
  if dist == "normal":
    return jax.random.normal(rng, shape, jnp.float32)
  raise ValueError(f"unknown reference distribution {dist!r}")


def with_reference(module: nn.Module, x: jax.Array, num_ref: int, dist: str = "uniform_pm1",
                   name: str = "z") -> jax.Array:
  """concat(reference rows, x): the fixed reference inputs of a VBN network, stored in `vbn_ref`.

  Call inside the network's compact `__call__`; the reference batch (num_ref rows shaped like x's
  rows) is drawn once at init from the `vbn` rng stream and is never trained.
  """
  ref = module.variable("vbn_ref", name, lambda: make_reference_batch(
      module.make_rng("vbn"), (num_ref,) + tuple(x.shape[1:]), dist)).value
  if ref.shape[1:] != x.shape[1:]:
    raise ValueError(f"VBN reference rows have shape {ref.shape[1:]} but the live rows {x.shape[1:]}")
  return jnp.concatenate([ref.astype(x.dtype), x])


class VirtualBatchNorm(nn.Module):
  """VBN over `x = concat(reference rows, live rows)`; `num_ref` = R (static)."""
  num_ref: int
  variant: str = "vbn"
  eps: float = 1e-5
  live_stats: str = "per_example"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.variant not in VARIANTS:
      raise ValueError(f"model.g_norm={self.variant!r} is not a VBN variant {VARIANTS}")
    if self.live_stats not in LIVE_STATS:
      raise ValueError(f"VBN live_stats={self.live_stats!r} is not one of {LIVE_STATS}")
    in_dtype = x.dtype
    x = x.astype(jnp.promote_types(in_dtype, jnp.float32))  # no-op for float32
    if x.ndim == 1:  # official: a vector is reshaped to (N, 1, 1, 1), one gamma and beta
      return self._normalise(x[:, None])[:, 0].astype(in_dtype)
    return self._normalise(x).astype(in_dtype)

  def _normalise(self, x: jax.Array) -> jax.Array:
    r = self.num_ref
    if not 0 < r < x.shape[0]:
      raise ValueError(f"VBN input has {x.shape[0]} rows; expected the {r} reference rows "
                       "followed by at least one live row")
    ref, live = x[:r], x[r:]
    per_pixel = self.variant == "vbnlp"
    spatial = tuple(range(1, x.ndim - 1))
    ref_axes = (0,) if per_pixel else (0,) + spatial
    mu_ref = jnp.mean(ref, axis=ref_axes, keepdims=True)
    s_ref = jnp.mean(jnp.square(ref), axis=ref_axes, keepdims=True)
    if self.live_stats == "paper_era_batch":
      live_axes = ref_axes
    else:
      live_axes = () if per_pixel else spatial
    mu_i = jnp.mean(live, axis=live_axes, keepdims=True) if live_axes else live
    s_i = jnp.mean(jnp.square(live), axis=live_axes, keepdims=True) if live_axes else live**2
    c = 1.0 / (r + 1.0)
    mu = c * mu_i + (1.0 - c) * mu_ref
    s = c * s_i + (1.0 - c) * s_ref
    ref_out = (ref - mu_ref) * jax.lax.rsqrt(self.eps + s_ref - jnp.square(mu_ref))
    live_out = (live - mu) * jax.lax.rsqrt(self.eps + s - jnp.square(mu))
    shape = x.shape[1:] if per_pixel else (x.shape[-1],)
    if self.variant == "vbn":
      gamma = self.param("gamma", lambda k, s: 1.0 + 0.02 * jax.random.normal(k, s), shape)
    else:
      gamma = jnp.exp(self.param("log_gamma", nn.initializers.normal(0.02), shape))
    beta = self.param("beta", nn.initializers.zeros, shape)
    return jnp.concatenate([ref_out, live_out]) * gamma + beta
