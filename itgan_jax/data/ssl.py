"""The official semi-supervised data protocol (papers.md A.3, A.4).

Labeled subset: permute the training set with `RandomState(seed_data)` and take the first `count`
examples of each class (class by class). Unlabeled set: the whole training set. Each epoch: the
labeled set is re-permuted and tiled to the epoch length, the unlabeled set is permuted, and a second
independent permutation feeds feature matching (`trainx_unl2`).
"""

from __future__ import annotations

import numpy as np


def select_labeled(train_y: np.ndarray, count_per_class: int, seed_data: int,
                   num_classes: int) -> np.ndarray:
  """Indices of the labeled subset, exactly as the official `txs/tys` selection."""
  if count_per_class <= 0:
    raise ValueError(f"count_per_class must be positive, got {count_per_class}")
  inds = np.random.RandomState(seed_data).permutation(train_y.shape[0])
  permuted_y = train_y[inds]
  chosen = []
  for j in range(num_classes):
    of_class = inds[permuted_y == j]
    if of_class.shape[0] < count_per_class:
      raise ValueError(f"class {j} has only {of_class.shape[0]} training examples, fewer than the "
                       f"{count_per_class} labeled examples per class asked for")
    chosen.append(of_class[:count_per_class])
  return np.concatenate(chosen)


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
  return np.random.default_rng([seed, epoch])


def ssl_epoch_plan(num_train: int, labeled_idx: np.ndarray, batch_size: int, seed: int,
                   epoch: int) -> dict[str, np.ndarray]:
  """Index plan of one epoch: `lab`, `unl`, `unl2`, each (num_train // batch_size, batch_size).

  Deterministic in (seed, epoch) alone, so a resumed run regenerates any epoch's plan directly.
  """
  rng = _epoch_rng(seed, epoch)
  steps = num_train // batch_size
  n = steps * batch_size
  n_lab = labeled_idx.shape[0]
  tiles = -(-n // n_lab)
  lab = np.concatenate([labeled_idx[rng.permutation(n_lab)] for _ in range(tiles)])[:n]
  unl = rng.permutation(num_train)[:n]
  unl2 = rng.permutation(num_train)[:n]
  shape = (steps, batch_size)
  return {"lab": lab.reshape(shape).astype(np.int32), "unl": unl.reshape(shape).astype(np.int32),
          "unl2": unl2.reshape(shape).astype(np.int32)}


def gan_epoch_plan(num_train: int, batch_size: int, seed: int, epoch: int) -> dict[str, np.ndarray]:
  """Index plan of one unsupervised epoch: `idx` (num_train // batch_size, batch_size)."""
  steps = num_train // batch_size
  idx = _epoch_rng(seed, epoch).permutation(num_train)[:steps * batch_size]
  return {"idx": idx.reshape(steps, batch_size).astype(np.int32)}
