"""`jax.random.normal` bit for bit, computed as one elementwise expression (fast on XLA:CPU).

On CPU, JAX lowers the threefry-2x32 hash behind `jax.random.*` as a *rolled* loop (5 iterations
of 4 rounds), so XLA runs every round as its own kernel over the whole array and cannot fuse the
hash with the uint->float conversion, `erf_inv` and the consumer (e.g. `x + sigma * noise`). For
the MNIST discriminator (about 1.5M normals per training iteration) that loop was about a fifth
of the step. `normal` below evaluates the *same* function unrolled, with jnp integer ops:

  counts  = row-major linear index of each element as a 64-bit integer (hi, lo) 32-bit words
            (`jax._src.random.prng.iota_2x32_shape`, the partitionable scheme, default since
            JAX 0.5: `jax_threefry_partitionable=True`);
  (a, b)  = threefry2x32(key, (hi, lo)) (Salmon et al. 2011, 20 rounds, as JAX's `threefry2x32`);
  bits    = a ^ b;
  u       = max(lo, f * (1 - lo) + lo) with f = bitcast(bits >> 9 | 0x3f800000) - 1 and
            lo = nextafter(-1, 0) (`jax.random.uniform(key, shape, f32, lo, 1)`);
  normal  = sqrt(2) * erf_inv(u)  (`jax.random.normal`).

It is therefore the same random stream as `jax.random.normal(key, shape, float32)` (tested bit
for bit, also under jit and sharding), only cheaper: XLA fuses everything into one loop. For
any other case (a non-threefry key, `jax_threefry_partitionable=False`, another dtype, 2^32 or
more elements) it calls `jax.random.normal` itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: jax.Array, d: int) -> jax.Array:
  return lax.shift_left(x, np.uint32(d)) | lax.shift_right_logical(x, np.uint32(32 - d))


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
  """Threefry-2x32 with 20 rounds, unrolled; the same function as JAX's `threefry2x32_p`."""
  ks = (k1, k2, k1 ^ k2 ^ _PARITY)
  x = [x1 + ks[0], x2 + ks[1]]
  for i in range(5):
    for rot in _ROTATIONS[i % 2]:
      x[0] = x[0] + x[1]
      x[1] = x[0] ^ _rotl(x[1], rot)
    x = [x[0] + ks[(i + 1) % 3], x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)]
  return x[0], x[1]


def _linear_index(shape: tuple[int, ...]) -> jax.Array:
  """uint32 row-major index of every element, from per-axis iotas (partitionable)."""
  strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
  index = None
  for d, stride in enumerate(strides):
    term = lax.broadcasted_iota(jnp.uint32, shape, d)
    if stride != 1:
      term = term * np.uint32(stride)
    index = term if index is None else index + term
  return index


def _threefry_words(key: jax.Array) -> tuple[jax.Array, jax.Array] | None:
  """The two uint32 key words if `key` is a threefry-2x32 key (raw or typed), else None."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.shape or "threefry" not in str(jax.random.key_impl(key)):
      return None
    key = jax.random.key_data(key)
  elif (key.dtype != jnp.uint32 or key.shape != (2,)
        or jax.config.jax_default_prng_impl != "threefry2x32"):
    return None
  return key[0], key[1]


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """Standard normal samples, bit for bit `jax.random.normal(key, shape, dtype)`."""
  shape = tuple(int(s) for s in shape)
  words = _threefry_words(key)
  if (words is None or jnp.dtype(dtype) != jnp.float32 or not shape
      or math.prod(shape) >= 2**32 or not jax.config.jax_threefry_partitionable):
    return jax.random.normal(key, shape, dtype)
  k1, k2 = words
  # Counts (hi, lo) of the 64-bit linear index; hi is 0 below 2^32 elements.
  b1, b2 = threefry2x32(k1, k2, jnp.zeros(shape, jnp.uint32), _linear_index(shape))
  bits = b1 ^ b2
  one = np.array(1.0, np.float32)
  lo = np.nextafter(np.float32(-1.0), np.float32(0.0), dtype=np.float32)
  float_bits = lax.shift_right_logical(bits, np.uint32(32 - 23)) | one.view(np.uint32)
  floats = lax.bitcast_convert_type(float_bits, jnp.float32) - one
  u = lax.max(jnp.full(shape, lo), floats * (one - lo) + lo)
  return lax.mul(np.array(np.sqrt(2), np.float32), lax.erf_inv(u))
