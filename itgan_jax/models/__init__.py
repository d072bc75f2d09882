"""Model families, selected by `config.model.name`."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

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
