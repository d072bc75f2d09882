"""Model families, selected by `config.model.name`."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from itgan_jax.models import conv
from itgan_jax.models import mnist

# name -> builder(model_config, num_classes, image_shape) -> (generator, discriminator)
_REGISTRY: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {}


def register(name: str):
  def wrap(builder):
    _REGISTRY[name] = builder
    return builder
  return wrap


def available() -> tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def build(model_config: ml_collections.ConfigDict, num_classes: int,
          image_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
  """Returns (generator, discriminator) for `model_config.name`."""
  if model_config.name not in _REGISTRY:
    raise ValueError(f"config.model.name={model_config.name!r} is not a known model family; "
                     f"choose one of {available()}")
  return _REGISTRY[model_config.name](model_config, num_classes, image_shape)


@register("mnist_mlp")
def _mnist_mlp(cfg, num_classes, image_shape):
  if cfg.g_norm != "batch":
    raise ValueError(f"model.g_norm={cfg.g_norm!r} is not supported by mnist_mlp (official G uses "
                     "batch norm); use 'batch'")
  g = mnist.MnistGenerator(image_shape=tuple(image_shape))
  d = mnist.MnistDiscriminator(num_classes=num_classes, input_noise=cfg.d_input_noise,
                               hidden_noise=cfg.d_hidden_noise)
  return g, d


@register("conv")
def _conv(cfg, num_classes, image_shape):
  """Official CIFAR/SVHN convnets; 28x28 inputs use first_pad 3 and a 7x7 G start (see conv.py)."""
  h, _, c = image_shape
  if cfg.d_input_noise and cfg.d_input_dropout:
    raise ValueError("model.d_input_noise and model.d_input_dropout are exclusive (official FM "
                     "scripts: dropout 0.2; MD scripts: Gaussian noise 0.2); set one to 0")
  g = conv.ConvGenerator(start_size=h // 8 if h % 8 == 0 else h // 4,
                         channels=tuple(cfg.g_channels), out_channels=c, norm=cfg.g_norm,
                         num_ref=cfg.vbn_ref_size, ref_dist=cfg.z_dist)
  d = conv.ConvDiscriminator(channels=tuple(cfg.d_channels), num_classes=num_classes,
                             input_dropout=cfg.d_input_dropout, input_noise=cfg.d_input_noise,
                             minibatch_kernels=cfg.minibatch_kernels,
                             minibatch_dim=cfg.minibatch_dim, first_pad=(32 - h) // 2 + 1)
  return g, d
