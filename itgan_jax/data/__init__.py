"""Datasets (original files or tfds), the official semi-supervised protocol, pixel scalings."""

from itgan_jax.data.base import (ArrayDataset, DatasetCorruptError, DatasetError,
                                 DatasetNotFoundError)
from itgan_jax.data.datasets import load_dataset
from itgan_jax.data.preprocess import to_float, to_uint8
from itgan_jax.data.ssl import EpochPlan, gan_epoch_plan, select_labeled, ssl_epoch_plan

__all__ = ["ArrayDataset", "DatasetError", "DatasetNotFoundError", "DatasetCorruptError",
           "load_dataset", "to_float", "to_uint8", "select_labeled", "ssl_epoch_plan",
           "gan_epoch_plan", "EpochPlan"]
