"""The official semi-supervised data protocol (papers.md A.3, A.4).

Labeled subset (openai/improved-gan `train_mnist_feature_matching.py`, `train_cifar_*.py`):
`inds = RandomState(seed_data).permutation(N)`, then for each class j the first `count` examples
of `trainx[inds][trainy[inds] == j]`, concatenated class by class (`txs`, `tys`). Unlabeled set:
the whole training set (labeled examples included).

Each epoch (official training loop): the labeled set is re-permuted `ceil(N / n_lab)` times and
concatenated (MNIST: `N // n_lab`, equal for 60000 / 100), the unlabeled set is permuted, and a
second independent permutation (`trainx_unl2`) feeds the generator's feature-matching batches.
Here the plans are index arrays drawn from `default_rng([seed, epoch])`, so any epoch's plan can be
regenerated without replaying earlier epochs (the official code draws them sequentially from one
RandomState; the distribution is the same).
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np


class EpochPlan(TypedDict):
  """Index plan of one semi-supervised epoch; each array is int32 (steps, batch_size)."""
  lab: np.ndarray   # labeled batches (indices into the training set, all in labeled_idx)
  unl: np.ndarray   # unlabeled batches for D (a permutation of the training set)
  unl2: np.ndarray  # unlabeled batches for G's feature matching (an independent permutation)


def select_labeled(train_y: np.ndarray, count_per_class: int, seed_data: int,
                   num_classes: int, draws_before: int = 0) -> np.ndarray:
  """Indices (int64, class by class) of the labeled subset, exactly as the official `txs/tys`.

  `draws_before`: `randint(2 ** 15)` draws taken from `RandomState(seed_data)` before its
  permutation. 0 for the scripts with `--seed_data` (a fresh `rng_data`); 2 for the minibatch-
  discrimination scripts, whose permutation comes from `RandomState(seed)` after the two draws
  that seed Theano's MRG stream and Lasagne.
  """
  train_y = np.asarray(train_y)
  if train_y.ndim != 1:
    raise ValueError(f"train_y must be a 1-D label array, got shape {train_y.shape}")
  if count_per_class <= 0:
    raise ValueError(f"count_per_class must be positive, got {count_per_class}")
  if draws_before < 0:
    raise ValueError(f"draws_before must be >= 0, got {draws_before}")
  rng = np.random.RandomState(seed_data)
  for _ in range(draws_before):
    rng.randint(2 ** 15)
  inds = rng.permutation(train_y.shape[0])
  permuted_y = train_y[inds]
  chosen = []
  for j in range(num_classes):
    of_class = inds[permuted_y == j]
    if of_class.shape[0] < count_per_class:
      raise ValueError(f"class {j} has only {of_class.shape[0]} training examples, fewer than the "
                       f"{count_per_class} labeled examples per class asked for (data.num_labeled "
                       f"= {count_per_class * num_classes})")
    chosen.append(of_class[:count_per_class])
  return np.concatenate(chosen)


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
  if seed < 0 or epoch < 0:
    raise ValueError(f"seed ({seed}) and epoch ({epoch}) must be non-negative")
  return np.random.default_rng([seed, epoch])


def _steps(num_train: int, batch_size: int) -> int:
  if batch_size <= 0 or num_train < batch_size:
    raise ValueError(f"batch_size={batch_size} must be in [1, num_train={num_train}]")
  return num_train // batch_size


def ssl_epoch_plan(num_train: int, labeled_idx: np.ndarray, batch_size: int, seed: int,
                   epoch: int) -> EpochPlan:
  """Index plan of one epoch: `lab`, `unl`, `unl2`, int32 (num_train // batch_size, batch_size).

  `lab` concatenates ceil(n / n_lab) independent permutations of `labeled_idx` truncated to the
  n = steps * batch_size used indices (so with n_lab > n / 2 the last tile is partial, and with
  n_lab > n only part of the labeled set is seen in this epoch). Deterministic in (seed, epoch).
  """
  labeled_idx = np.asarray(labeled_idx)
  if labeled_idx.ndim != 1 or labeled_idx.size == 0:
    raise ValueError(f"labeled_idx must be a non-empty 1-D index array, got {labeled_idx.shape}")
  if labeled_idx.min() < 0 or labeled_idx.max() >= num_train:
    raise ValueError(f"labeled_idx has indices outside [0, {num_train})")
  steps = _steps(num_train, batch_size)
  rng = _epoch_rng(seed, epoch)
  n = steps * batch_size
  n_lab = labeled_idx.shape[0]
  tiles = -(-n // n_lab)
  lab = np.concatenate([labeled_idx[rng.permutation(n_lab)] for _ in range(tiles)])[:n]
  unl = rng.permutation(num_train)[:n]
  unl2 = rng.permutation(num_train)[:n]
  shape = (steps, batch_size)
  return EpochPlan(lab=lab.reshape(shape).astype(np.int32),
                   unl=unl.reshape(shape).astype(np.int32),
                   unl2=unl2.reshape(shape).astype(np.int32))


def gan_epoch_plan(num_train: int, batch_size: int, seed: int, epoch: int,
                   streams: tuple[str, ...] = ("idx",)) -> dict[str, np.ndarray]:
  """Index plan of one unsupervised epoch: one int32 (num_train // batch_size, batch_size) array
  per name in `streams`, each an independent permutation of the training set drawn in that order
  from `default_rng([seed, epoch])` (so `idx` is the same whatever streams follow it; a second
  stream feeds feature matching's real batches, as the official `trainx_unl2`)."""
  steps = _steps(num_train, batch_size)
  rng = _epoch_rng(seed, epoch)
  return {name: rng.permutation(num_train)[:steps * batch_size].reshape(steps, batch_size)
          .astype(np.int32) for name in streams}
