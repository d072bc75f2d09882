"""Optimisers, learning-rate schedules and parameter averaging."""
from itgan_jax.optim.adam import make_adam
from itgan_jax.optim.adam import official_adam
from itgan_jax.optim.ema import ema_debiased
from itgan_jax.optim.ema import ema_init
from itgan_jax.optim.ema import ema_update
from itgan_jax.optim.schedules import constant
from itgan_jax.optim.schedules import make_schedule
from itgan_jax.optim.schedules import official_linear_decay
