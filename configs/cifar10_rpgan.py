"""RP-GAN on CIFAR-10 (`variant='rpgan'`): K discriminators on fixed random projections vs one D.

No official CIFAR experiment exists (ayanc/rpgan trains faces and dogs, papers.md C.1); this preset
applies the official algorithm and networks (configs/rpgan.py) to 32x32 CIFAR-10 so that RP-GAN
and its single-discriminator baseline can be compared on the download-free metric harness:
  * projections: K 8x8 stride-2 unit-norm Gaussian filters 3 -> 1 channel (padding 3), drawn from
    config.seed: 32x32x3 -> 16x16x1 (the official 12x dimensionality reduction);
  * D_k: 4x4 stride-2 convs df, 2df, 4df (16 -> 2), then 2x2 to one logit, lReLU 0.2, df 64;
    the baseline (`:k=0`) is the same stack on the full 32x32x3 image (df, ..., 8df);
  * G: z ~ U(-1, 1)^100 -> 4x4x512 -> BN ReLU -> 4x4 stride-2 deconvs 256, 128 (BN, ReLU) -> 3,
    tanh;
  * the official game and optimiser: G step then D step on the updated G, non-saturating G loss
    averaged over K, Adam(2e-4, beta1 0.5) for G and each D_k, batch 64; 128 epochs of
    50000 // 64 = 781 iterations (99,968: the official 1e5 iterations).
`:upsample64` trains at 64x64 as Albuquerque et al. 2019 did with CIFAR-10 (real images enlarged
bicubically inside the step, G 4x4x1024 -> ... -> 64x64, 64x64x3 -> 32x32x1 projections, df 128
as the face presets); its samples are box-downsampled to 32x32 for the metrics.

Arguments: `k=K` discriminators (default 48, the paper's main K; 0 = the full-image baseline;
-1 = the preset's default), `upsample64`, `small`, `tiny`.
Tracked during training: the CIFAR-10 classifier score, Frechet distance and KID on the checked-in
classifier's penultimate features (docs/metrics.md), SWD and MS-SSIM; IS/FID with
`--config.evals.metrics.inception_weights=FILE` and metrics 'is', 'fid'.

Run (full size; an accelerator job: 48 D_k of 64-128-256 channels):
  python -m itgan_jax.main --config=configs/cifar10_rpgan.py --workdir=runs/cifar10_rpgan48
  python -m itgan_jax.main --config=configs/cifar10_rpgan.py:k=0 --workdir=runs/cifar10_rpgan0
CPU-sized (G 128, df 16, K 12 unless k= is given, 100-iteration epochs, metrics on 2,048 samples
every 2 epochs; 0.8-1.1 s per iteration at K = 12 and 0.4-0.5 s with one projection on 2 loaded CPU cores,
RESULTS.md "RP-GAN step", i.e. about 2 min per epoch plus the metrics):
  python -m itgan_jax.main --config=configs/cifar10_rpgan.py:small --workdir=runs/cifar10_rpgan_small
  python -m itgan_jax.main --config=configs/cifar10_rpgan.py:small,k=0 --workdir=runs/cifar10_rp0_small
Expected result: no published RP-GAN number exists (papers.md C.5); the comparison is relative
(K projections vs k=0 on the same metrics over training). Smoke (seconds): `:tiny`.
"""

import ml_collections
from ml_collections import config_dict

from itgan_jax.config_args import parse_arg, run_sections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, k=-1, upsample64=False, tiny=False, small=False)
  if args.k < -1:
    raise ValueError(f"config argument k={args.k} must be >= 0 (0 = the full-image baseline) or "
                     "-1 (the preset's default)")
  k = args.k if args.k >= 0 else (2 if args.tiny else 12 if args.small else 48)
  up = args.upsample64

  c = ml_collections.ConfigDict()
  c.variant = "rpgan"
  c.seed = 1
  c.num_devices = config_dict.placeholder(int)  # None: all devices

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"
  c.data.source = "auto"
  c.data.dir = config_dict.placeholder(str)
  c.data.tfds_data_dir = config_dict.placeholder(str)
  c.data.allow_download = False
  c.data.init_size = 64            # shapes for the init pass
  c.data.scale = "tanh"            # [-1, 1] (official x * 2 / 255 - 1)
  c.data.feeder = "auto"
  c.data.pad_to = config_dict.placeholder(int)   # None: no padding
  c.data.upsample = 2 if up else 1               # real images enlarged inside the step

  c.model = ml_collections.ConfigDict()
  c.model.name = "rpgan"
  c.model.z_dim = 100
  c.model.z_dist = "uniform_pm1"
  c.model.g_features = 1024 if up else 512
  c.model.d_features = 128 if up and k else 64
  c.model.num_projections = k      # K; 0 = one D on the full image
  c.model.projection_size = 8
  c.model.projection_stride = 2
  c.model.projection_seed = config_dict.placeholder(int)   # None: config.seed
  c.model.projection_file = config_dict.placeholder(str)
  c.model.k_strategy = "auto"      # 'vmap' | 'map' | 'shard' | 'auto' (docs/rpgan.md)
  c.model.k_map_batch_size = 4

  c.loss = ml_collections.ConfigDict()
  c.loss.generator = "non_saturating"
  c.loss.label_smoothing = 1.0     # 1.0 = none (official); e.g. 0.9 one-sided smoothing
  c.loss.kl_target = 0.375

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 2e-4
  c.optim.schedule = "constant"
  c.optim.schedule_kwargs = ml_collections.ConfigDict()
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.eps_inside_sqrt = False  # TF AdamOptimizer
  c.optim.g_ema_rate = 0.0         # EMA of G for samples/metrics (0 = off; ProGAN 0.001)
  c.optim.historical_averaging_d = 0.0   # per discriminator
  c.optim.historical_averaging_g = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64
  c.train.num_epochs = 128         # x 781 = 99,968 iterations (official MAXITER 1e5)
  c.train.steps_per_epoch = config_dict.placeholder(int)  # None: one pass, 50000 // 64 = 781
  c.train.steps_per_call = 50
  c.train.num_seeds = 1            # rpgan: 1 (the projections depend on the seed)
  c.train.xla_cpu_region_copy_analysis = True

  c.evals = ml_collections.ConfigDict()
  c.evals.samples = ml_collections.ConfigDict(dict(
      kind="sample_grid", every_epochs=1, num_samples=100))
  c.evals.metrics = ml_collections.ConfigDict(dict(
      kind="image_metrics", every_epochs=10,
      metrics=("classifier_score", "classifier_fd", "classifier_kid", "swd", "msssim"),
      num_samples=10000, reference="train", num_reference=config_dict.placeholder(int),
      swd_images=10000, msssim_images=10000,
      inception_weights=config_dict.placeholder(str)))

  # precision (float32 products), log, checkpoint: config_args.run_sections()
  c.update(run_sections())
  c.log.per_discriminator_max = 48  # log loss_d_kNN / loss_gen_kNN when K <= this

  if args.small:  # CPU-sized
    c.model.g_features = 128
    c.model.d_features = 16
    c.train.steps_per_epoch = 100
    c.train.steps_per_call = 10
    c.train.num_epochs = 1000      # resumable; stop whenever
    c.evals.metrics.every_epochs = 2
    c.evals.metrics.num_samples = 2048
    c.evals.metrics.swd_images = 2048
    c.evals.metrics.msssim_images = 2048
  if args.tiny:   # tests: seconds
    c.model.z_dim = 16
    c.model.g_features = 16
    c.model.d_features = 4
    c.data.init_size = 8
    c.train.batch_size = 8
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 2
    c.train.steps_per_call = 1
    c.evals.samples.num_samples = 4
    c.evals.metrics.metrics = ()
    c.evals.metrics.num_samples = 64
  return c
