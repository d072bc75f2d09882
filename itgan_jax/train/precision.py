"""Matmul precision and compute dtype of an experiment (`config.precision`, docs/precision.md).

`precision.matmul` is the precision of float32 matrix products and convolutions, a value of
`jax.default_matmul_precision`; the loop, the chunk functions, initialisation and the evaluators
trace under it. XLA's own default ('default', i.e. no precision set) computes float32 products in
TF32 on NVIDIA Ampere/Hopper GPUs and in one bfloat16 pass on TPU; 'highest' asks for float32 on
every backend (XLA:CPU computes float32 in any case). Faithful runs use 'highest', the default
when the key is absent.

`precision.compute_dtype` is the dtype the networks compute in: 'float32', or 'bfloat16' (mixed
precision): parameters, optimizer state and the EMA stay float32; each forward pass casts the
float variables and the input to bfloat16 and its outputs back to float32 (`apply`), so losses,
feature-matching statistics and metrics are float32; data-dependent init runs in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

# The precision levels of `jax.default_matmul_precision` (jax.lax.Precision aliases):
# 'highest' = 'float32' (HIGHEST), 'high' = 'tensorfloat32' (HIGH), 'default' = 'bfloat16' (DEFAULT).
MATMUL_PRECISIONS = ("highest", "float32", "high", "tensorfloat32", "default", "bfloat16")
COMPUTE_DTYPES = ("float32", "bfloat16")
DEFAULT_MATMUL = "highest"
DEFAULT_COMPUTE_DTYPE = "float32"
KEYS = ("matmul", "compute_dtype")


@dataclasses.dataclass(frozen=True)
class Precision:
  """The validated `config.precision` section."""
  matmul: str = DEFAULT_MATMUL
  compute_dtype: str = DEFAULT_COMPUTE_DTYPE


def from_config(config: Any) -> Precision:
  """`config.precision` (absent section or keys: 'highest' / 'float32'); a one-line ValueError
  naming the key and the accepted values otherwise."""
  section = config.get("precision") if hasattr(config, "get") else None
  if section is None:
    return Precision()
  if not hasattr(section, "get"):
    raise ValueError(f"config.precision={section!r} must be a section with keys {KEYS}, e.g. "
                     "config.precision.matmul='highest'")
  unknown = sorted(set(section.keys()) - set(KEYS))
  if unknown:
    raise ValueError(f"config.precision has unknown key(s) {unknown}; the keys are {KEYS}")
  matmul = section.get("matmul", DEFAULT_MATMUL)
  if matmul not in MATMUL_PRECISIONS:
    raise ValueError(f"config.precision.matmul={matmul!r} is not a matmul precision; use one of "
                     f"{MATMUL_PRECISIONS} (jax.default_matmul_precision; 'highest' = float32 on "
                     "every backend)")
  compute_dtype = section.get("compute_dtype", DEFAULT_COMPUTE_DTYPE)
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"config.precision.compute_dtype={compute_dtype!r}; use one of "
                     f"{COMPUTE_DTYPES} (parameters and optimizer state stay float32)")
  return Precision(matmul, compute_dtype)


def matmul_context(matmul: str | None):
  """`jax.default_matmul_precision(matmul)`, or no change for None. Must be active while a
  function is traced (it is part of jit's cache key, so a call under another setting retraces)."""
  if matmul is None:
    return contextlib.nullcontext()
  return jax.default_matmul_precision(matmul)


def cast_floating(tree: Any, dtype) -> Any:
  """`tree` with its floating-point leaves cast to `dtype` (integer leaves, e.g. keys, kept)."""
  dtype = jnp.dtype(dtype)

  def cast(x):
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype:
      return jnp.asarray(x).astype(dtype)
    return x
  return jax.tree.map(cast, tree)


def apply(module, variables: Any, x: jax.Array, *, compute_dtype: str = DEFAULT_COMPUTE_DTYPE,
          **kwargs) -> Any:
  """`module.apply(variables, x, **kwargs)` computed in `compute_dtype`.

  float32: exactly `module.apply` (no casts). bfloat16: the float variables and `x` are cast to
  bfloat16 (gradients flow back to the float32 parameters through the casts, arriving as float32),
  the network computes in bfloat16, and its floating outputs are cast to float32.
  """
  if compute_dtype == "float32":
    return module.apply(variables, x, **kwargs)
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute_dtype={compute_dtype!r}; use one of {COMPUTE_DTYPES}")
  out = module.apply(cast_floating(variables, compute_dtype), cast_floating(x, compute_dtype),
                     **kwargs)
  return cast_floating(out, jnp.float32)
