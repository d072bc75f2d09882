"""Losses."""
from itgan_jax.losses.feature_matching import feature_matching_loss
from itgan_jax.losses.ssl import classification_error
from itgan_jax.losses.ssl import discriminator_loss
from itgan_jax.losses.ssl import log_sum_exp
from itgan_jax.losses.ssl import supervised_loss
from itgan_jax.losses.ssl import unsupervised_loss
