"""Model families, selected by `config.model.name`."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from itgan_jax.models import conv
from itgan_jax.models import imagenet
from itgan_jax.models import mnist
from itgan_jax.models import progressive
from itgan_jax.models import rpgan

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


def _get(cfg, key, default):
  """Optional model keys (older configs predate the technique switches)."""
  return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def _check_minibatch(kernels: int, dim: int) -> None:
  if kernels < 0 or (kernels and dim < 1):
    raise ValueError(f"model.minibatch_kernels={kernels} must be >= 0 (0 = off) and "
                     f"model.minibatch_dim={dim} >= 1")


@register("mnist_mlp")
def _mnist_mlp(cfg, num_classes, image_shape):
  """The official MNIST feature-matching MLPs (+ optional minibatch layer); other techniques fail."""
  if cfg.g_norm != "batch":
    raise ValueError(f"model.g_norm={cfg.g_norm!r} is not supported by mnist_mlp (official G uses "
                     "batch norm); use 'batch', or model.name='conv' for virtual batch norm")
  kernels, dim = _get(cfg, "minibatch_kernels", 0), _get(cfg, "minibatch_dim", 5)
  _check_minibatch(kernels, dim)
  if _get(cfg, "d_dropout", 0.0):
    raise ValueError("model.d_dropout is not supported by mnist_mlp (its D uses Gaussian noise: "
                     "model.d_input_noise / model.d_hidden_noise); set model.d_dropout=0")
  g = mnist.MnistGenerator(image_shape=tuple(image_shape))
  d = mnist.MnistDiscriminator(num_classes=num_classes, input_noise=cfg.d_input_noise,
                               hidden_noise=cfg.d_hidden_noise, minibatch_kernels=kernels,
                               minibatch_dim=dim)
  return g, d


@register("conv")
def _conv(cfg, num_classes, image_shape):
  """Official CIFAR/SVHN convnets; 28x28 inputs use first_pad 3 and a 7x7 G start (see conv.py)."""
  h, w, c = image_shape
  if h != w:
    raise ValueError(f"the conv model family takes square images, got {h}x{w}")
  if cfg.g_norm not in conv.G_NORMS:
    raise ValueError(f"model.g_norm={cfg.g_norm!r} is not one of {conv.G_NORMS}")
  d_dropout, d_noise = _get(cfg, "d_dropout", 0.0), cfg.d_input_noise
  if d_noise and d_dropout:
    raise ValueError("model.d_input_noise and model.d_dropout are exclusive (official FM "
                     "scripts: input dropout 0.2; MD scripts: input Gaussian noise 0.2); set one "
                     "to 0")
  for key, value in (("d_dropout", d_dropout), ("d_hidden_dropout", _get(cfg, "d_hidden_dropout",
                                                                         0.5))):
    if not 0.0 <= value < 1.0:
      raise ValueError(f"model.{key}={value} must be in [0, 1)")
  kernels, dim = _get(cfg, "minibatch_kernels", 0), _get(cfg, "minibatch_dim", 5)
  _check_minibatch(kernels, dim)
  g_channels = tuple(cfg.g_channels)
  up = 2 ** len(g_channels)
  if h % up:
    raise ValueError(f"model.g_channels={g_channels} gives {len(g_channels)} stride-2 deconvs, so "
                     f"the image side {h} must be a multiple of {up}")
  num_ref = _get(cfg, "vbn_ref_size", 100)
  if cfg.g_norm in conv.VBN_VARIANTS and num_ref < 1:
    raise ValueError(f"model.vbn_ref_size={num_ref} must be >= 1 for g_norm={cfg.g_norm!r}")
  g = conv.ConvGenerator(start_size=h // up, channels=g_channels, out_channels=c,
                         norm=cfg.g_norm, num_ref=num_ref, ref_dist=cfg.z_dist)
  d = conv.ConvDiscriminator(channels=tuple(cfg.d_channels), num_classes=num_classes,
                             input_dropout=d_dropout, input_noise=d_noise,
                             hidden_dropout=_get(cfg, "d_hidden_dropout", 0.5),
                             minibatch_kernels=kernels, minibatch_dim=dim,
                             first_pad=conv.first_conv_padding(h))
  return g, d


@register("imagenet")
def _imagenet(cfg, num_classes, image_shape):
  """Official ImageNet 128x128 G (VBN, per-pixel noise) and D (BN-cross, joint minibatch
  features, num_classes + 1 logits); see imagenet.py. Side a multiple of 32."""
  h, w, c = image_shape
  if h != w or h % imagenet.DOWNSAMPLE or c != 3:
    raise ValueError(f"the imagenet model family takes square RGB images whose side is a multiple "
                     f"of {imagenet.DOWNSAMPLE} (official 128x128x3), got {h}x{w}x{c}; set "
                     "data.image_size")
  for key in ("gf_dim", "df_dim", "vbn_ref_size", "minibatch_kernels", "minibatch_dim"):
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"model.{key}={value!r} must be an integer >= 1")
  if cfg.df_dim % 2:
    raise ValueError(f"model.df_dim={cfg.df_dim} must be even (BN-cross splits D's channels in "
                     "two halves)")
  g = imagenet.ImagenetGenerator(image_size=h, gf_dim=cfg.gf_dim, num_ref=cfg.vbn_ref_size,
                                 out_stddev=_get(cfg, "g_out_stddev", 0.075),
                                 out_bias=_get(cfg, "g_out_bias", -0.45))
  d = imagenet.ImagenetDiscriminator(df_dim=cfg.df_dim, num_classes=num_classes,
                                     input_noise=cfg.d_input_noise,
                                     minibatch_kernels=cfg.minibatch_kernels,
                                     minibatch_dim=cfg.minibatch_dim)
  return g, d


@register("progressive")
def _progressive(cfg, num_classes, image_shape):
  """Progressive Growing of GANs G and D (Theano `G_paper` / `D_paper`; see progressive.py).

  Unconditional only (num_classes 1). Image side: a power of two >= 4 (square); level L =
  log2(side) - 2 is the full resolution. Keys (defaults = the Theano CIFAR-10 config):
    z_dim (128)              latent size.
    fmap_base (4096), fmap_max (128), fmap_decay (1.0)   nf(s) = min(int(base / 2^(s decay)), max).
    normalize_latents (True) pixel-normalise z.
    use_wscale (True)        equalized learning rate in G and D (False: He init, rows (a)-(e*)).
    g_norm ('pixel')         'pixel' | 'batch' | 'vbn' | 'vbnl' | 'vbnlp' | 'none'.
    vbn_ref_size (100)       VBN reference batch size (g_norm 'vbn*').
    g_activation ('lrelu')   'lrelu' (0.2) | 'relu' (Table 1 rows (a)-(c)).
    tanh_output (False)      tanh after G's output blend (rows (a)-(c)).
    mbstd_group_size (None)  minibatch stddev: None = whole batch (paper), G = TF's groups of G,
                             0 = off.
    minibatch_kernels (0), minibatch_dim (5)   > 0: minibatch discrimination instead of stddev
                             (row (e*): 100 kernels).
    d_layer_norm (False)     Theano layer norm after every D conv (rows (a)-(c)).
  """
  if num_classes != 1:
    raise ValueError(f"model.name='progressive' is unconditional (one D output, the WGAN-GP "
                     f"critic); got num_classes={num_classes}; use an unconditional variant")
  h, w, c = image_shape
  if h != w:
    raise ValueError(f"the progressive model family takes square images, got {h}x{w}")
  if h < 4 or h & (h - 1):
    raise ValueError(f"the progressive model family needs an image side that is a power of two "
                     f">= 4 (4 * 2^L), got {h}; set data.image_size")
  g_norm = _get(cfg, "g_norm", "pixel")
  if g_norm not in progressive.G_NORMS:
    raise ValueError(f"model.g_norm={g_norm!r} is not one of {progressive.G_NORMS}")
  g_act = _get(cfg, "g_activation", "lrelu")
  if g_act not in progressive.G_ACTIVATIONS:
    raise ValueError(f"model.g_activation={g_act!r} is not one of {progressive.G_ACTIVATIONS}")
  ints = {key: _get(cfg, key, default) for key, default in
          (("z_dim", 128), ("fmap_base", 4096), ("fmap_max", 128), ("vbn_ref_size", 100))}
  for key, value in ints.items():
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"model.{key}={value!r} must be an integer >= 1")
  decay = _get(cfg, "fmap_decay", 1.0)
  if not isinstance(decay, (int, float)) or decay < 0:
    raise ValueError(f"model.fmap_decay={decay!r} must be a number >= 0")
  top_stage = h.bit_length() - 2  # nf(log2(side) - 1): the widths of the full-resolution block
  if progressive.num_features(top_stage, ints["fmap_base"], ints["fmap_max"], decay) < 1:
    raise ValueError(f"model.fmap_base={ints['fmap_base']} with fmap_decay={decay} gives 0 feature "
                     f"maps at {h}x{h} (nf({top_stage}) = 0); raise model.fmap_base")
  group = _get(cfg, "mbstd_group_size", None)
  if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group < 0):
    raise ValueError(f"model.mbstd_group_size={group!r} must be None (whole batch), 0 (off) or "
                     "an integer group size >= 1")
  kernels, dim = _get(cfg, "minibatch_kernels", 0), _get(cfg, "minibatch_dim", 5)
  _check_minibatch(kernels, dim)
  g = progressive.ProgressiveGenerator(
      resolution=h, num_channels=c, latent_dim=ints["z_dim"], fmap_base=ints["fmap_base"],
      fmap_max=ints["fmap_max"], fmap_decay=float(decay),
      normalize_latents=bool(_get(cfg, "normalize_latents", True)),
      use_wscale=bool(_get(cfg, "use_wscale", True)), norm=g_norm, activation=g_act,
      tanh_output=bool(_get(cfg, "tanh_output", False)), num_ref=ints["vbn_ref_size"])
  d = progressive.ProgressiveDiscriminator(
      resolution=h, num_channels=c, fmap_base=ints["fmap_base"], fmap_max=ints["fmap_max"],
      fmap_decay=float(decay), use_wscale=bool(_get(cfg, "use_wscale", True)),
      mbstd_group_size=group, minibatch_kernels=kernels, minibatch_dim=dim,
      layer_norm=bool(_get(cfg, "d_layer_norm", False)))
  return g, d


@register("rpgan")
def _rpgan(cfg, num_classes, image_shape):
  """RP-GAN (ayanc/rpgan, papers.md C.3): the official G and ONE discriminator D_k (the variant
  stacks K of them, `rpgan.DiscriminatorStack`); image side a power of two >= 8."""
  del num_classes  # one real/fake logit per discriminator
  h, w, c = image_shape
  if h != w:
    raise ValueError(f"the rpgan model family takes square images, got {h}x{w}")
  for key in ("g_features", "d_features"):
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"model.{key}={value!r} must be an integer >= 1")
  rpgan.generator_channels(h, cfg.g_features, c)  # clear errors for sizes G cannot make
  g = rpgan.RPGenerator(image_size=h, out_channels=c, features=cfg.g_features)
  d = rpgan.RPDiscriminator(features=cfg.d_features)
  return g, d
