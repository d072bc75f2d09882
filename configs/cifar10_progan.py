"""Progressive growing on CIFAR-10: the Theano config of the paper's CIFAR result (IS 8.80).

`tkarras/progressive_growing_of_gans` branch original-theano-version, config.py block "Section
6.5: CIFAR10 inception scores" (papers.md B.1-B.4; the TF version does not reproduce CIFAR):
  * unconditional, the 50,000 training images, no mirroring, data in [-1, 1];
  * G and D with 128 feature maps in every layer (fmap_base 4096, fmap_max 128), latent 128,
    z ~ N(0, I) pixel-normalised, equalized learning rate, pixelwise feature norm in G, lReLU 0.2,
    no tanh; D with minibatch stddev over the whole minibatch at 4x4;
  * growth 4 -> 32: 400k images to stabilise and 400k to fade in per resolution, minibatch 16
    at every resolution, 20M images in all (400 epochs of 50,000 images); Adam's moments restart
    at every phase start;
  * WGAN-GP with target gamma 750 (lambda 10, drift 0.001), G and D updated simultaneously from
    one minibatch; Adam lr 1e-3, beta1 0, beta2 0.99, eps 1e-8; no learning-rate ramp-up;
    G EMA 0.999 for samples and metrics.
Deliberate differences (docs/deviations.md): the reals are faded in float (Theano blends the uint8
data and truncates); the equalized-lr constant is gain / sqrt(fan_in) (Theano's WScaleLayer uses
the empirical RMS of its He draw, about 1 % off).

Run (full schedule: 1.25M steps of batch 16, far beyond a CPU; docs/compute.md estimates the GPU
time from the measured FLOPs):
  python -m itgan_jax.main --config=configs/cifar10_progan.py --workdir=runs/cifar10_progan
CPU-sized run (64 feature maps, 40k-image phases, metrics every epoch of 20,000 images; reaches
the 16x16 fade-in after 120k images; RESULTS.md has the numbers):
  python -m itgan_jax.main --config=configs/cifar10_progan.py:small --workdir=runs/cifar10_progan_small
Smoke run (seconds): --config=configs/cifar10_progan.py:tiny
Tracked: SWD (levels 32 and 16) and MS-SSIM as the paper, the CIFAR-10 classifier score and FD
(download-free classifier, docs/metrics.md); IS/FID with
`--config.evals.metrics.inception_weights=FILE` and metrics 'is', 'fid'. The paper's 8.80 was the
IS of 50,000 samples computed for every snapshot: compare both the last and the best epoch
(`experiments/summarize_run.py`).
"""

import ml_collections
from ml_collections import config_dict

from itgan_jax.config_args import parse_arg, run_sections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, small=False)
  c = ml_collections.ConfigDict()
  c.variant = "progressive"
  c.seed = 1
  c.num_devices = config_dict.placeholder(int)  # None: all devices

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"
  c.data.source = "auto"
  c.data.dir = config_dict.placeholder(str)
  c.data.tfds_data_dir = config_dict.placeholder(str)
  c.data.allow_download = False
  c.data.init_size = 16           # the init pass sees one minibatch (no data-dependent init)
  c.data.scale = "tanh"           # (x - 127.5) / 127.5: the official [-1, 1]
  c.data.feeder = "auto"
  c.data.fade_reals = True        # blend the reals in a fade (TF process_reals)

  c.model = ml_collections.ConfigDict()
  c.model.name = "progressive"
  c.model.z_dim = 128
  c.model.z_dist = "normal"
  c.model.fmap_base = 4096
  c.model.fmap_max = 128
  c.model.fmap_decay = 1.0
  c.model.normalize_latents = True
  c.model.use_wscale = True       # equalized learning rate
  c.model.g_norm = "pixel"        # 'pixel' | 'batch' | 'vbn' | 'none'
  c.model.g_activation = "lrelu"  # 'lrelu' (0.2) | 'relu'
  c.model.tanh_output = False
  c.model.mbstd_group_size = config_dict.placeholder(int)  # None: the whole minibatch; 0: off
  c.model.minibatch_kernels = 0   # > 0: minibatch discrimination instead (Table 1 row e*)
  c.model.minibatch_dim = 5
  c.model.d_layer_norm = False

  c.schedule = ml_collections.ConfigDict()
  c.schedule.initial_resolution = 4
  c.schedule.stabilize_kimg = 400.0
  c.schedule.fade_kimg = 400.0

  c.loss = ml_collections.ConfigDict()
  c.loss.kind = "wgan_gp"         # | 'bce' (with loss.label_smoothing)
  c.loss.gp_target = 750.0        # Theano CIFAR iwass_target (1 for CelebA/LSUN)
  c.loss.gp_weight = 10.0
  c.loss.drift = 0.001
  c.loss.label_smoothing = 1.0

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3
  c.optim.schedule = "constant"
  c.optim.schedule_kwargs = ml_collections.ConfigDict()
  c.optim.b1 = 0.0
  c.optim.b2 = 0.99
  c.optim.eps = 1e-8
  c.optim.eps_inside_sqrt = False
  c.optim.g_ema_rate = 0.001      # G_smoothing 0.999
  c.optim.reset = "phase"         # Adam restarts: 'phase' (official) | 'fade_start' | 'never'
  c.optim.historical_averaging_d = 0.0
  c.optim.historical_averaging_g = 0.0
  c.optim.historical_averaging_include_current = False

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 16
  c.train.num_epochs = 400        # 400 x 50,000 = 20M images
  c.train.steps_per_epoch = config_dict.placeholder(int)  # None: 50000 // 16 = 3125
  c.train.steps_per_call = 125
  c.train.update = "simultaneous"  # Theano CIFAR; 'alternating' = TF
  c.train.d_steps_per_g_step = 1
  c.train.num_seeds = 1
  c.train.xla_cpu_region_copy_analysis = True

  c.evals = ml_collections.ConfigDict()
  c.evals.samples = ml_collections.ConfigDict(dict(
      kind="sample_grid", every_epochs=1, num_samples=100))
  c.evals.metrics = ml_collections.ConfigDict(dict(
      kind="image_metrics", every_epochs=8,
      metrics=("classifier_score", "classifier_fd", "swd", "msssim"),
      num_samples=10000, reference="train", num_reference=config_dict.placeholder(int),
      swd_images=10000, msssim_images=10000,
      inception_weights=config_dict.placeholder(str)))

  c.update(run_sections())

  if args.small:  # CPU-sized: 64 maps, 40k-image phases; 16x16 fades in at 120k-160k images
    c.model.fmap_base = 2048
    c.model.fmap_max = 64
    c.model.z_dim = 64
    c.schedule.stabilize_kimg = 40.0
    c.schedule.fade_kimg = 40.0
    c.train.steps_per_epoch = 1250  # 20,000 images per logged epoch
    c.train.num_epochs = 50         # 1M images; resumable, stop whenever
    c.train.steps_per_call = 125
    c.evals.metrics.every_epochs = 1
    c.evals.metrics.num_samples = 2048
    c.evals.metrics.swd_images = 2048
    c.evals.metrics.msssim_images = 2048
  if args.tiny:   # tests: seconds; phases of 2 stable + 3 fade steps: 4 -> 32 in 15 steps
    c.model.fmap_base = 32
    c.model.fmap_max = 8
    c.model.z_dim = 8
    c.data.init_size = 4
    c.train.batch_size = 4
    c.schedule.stabilize_kimg = 0.008   # 2 steps of 4 images
    c.schedule.fade_kimg = 0.012
    c.train.num_epochs = 4
    c.train.steps_per_epoch = 4
    c.train.steps_per_call = 2
    c.evals.samples.num_samples = 4
    c.evals.metrics.metrics = ()
    c.evals.metrics.num_samples = 64
  return c
