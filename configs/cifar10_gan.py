"""Unsupervised CIFAR-10 GAN baseline on the official Improved-GAN conv family (`variant='gan'`).

The networks of `openai/improved-gan train_cifar_feature_matching.py` (papers.md A.3) with one
real/fake logit instead of the 10 class logits, trained without labels:
  * D: weight-normalised 9-layer conv net (96/192 channels, lReLU 0.2, NIN layers, global average
    pool), input dropout 0.2, hidden dropout 0.5, a 1-unit weight-normalised output layer;
  * G: U(0, 1)^100 -> dense 4x4x512 -> BN -> ReLU -> 5x5 stride-2 deconvs 256, 128 (BN, ReLU)
    -> weight-normalised deconv to 32x32x3 -> tanh;
  * DCGAN-style game: non-saturating G loss -log D(G(z)), one G step per D step, no label
    smoothing, no minibatch features, no historical averaging;
  * the official optimiser and schedule: Adam (lr 3e-4, beta1 0.5, eps inside the sqrt) flat to
    epoch 800, then linear to 0 at 1200; batch 100; 500 iterations per epoch; data
    (x - 127.5) / 128 (official CIFAR scaling).
Deliberate differences (docs/deviations.md): the official code has no unsupervised CIFAR script;
this one exists as the baseline of the Table 3 ablations (configs/cifar10_md_gan.py is the "-L"
column) and of the next papers.

Run (full schedule; far beyond a CPU: about 0.5 TFLOP per iteration):
  python -m itgan_jax.main --config=configs/cifar10_gan.py --workdir=runs/cifar10_gan
CPU-sized run (narrower networks, 100-iteration epochs, metrics every 2 epochs; 1.44 s per
iteration on 2 CPU cores, about 4 min per logged epoch with metrics on one core; RESULTS.md has
20 epochs: SWD 173 -> 49, MS-SSIM 0.59 -> 0.139, classifier FD 361 -> 165):
  python -m itgan_jax.main --config=configs/cifar10_gan.py:small --workdir=runs/cifar10_gan_small
Smoke run (seconds): --config=configs/cifar10_gan.py:tiny
Tracked during training: the CIFAR-10 classifier score and classifier FD (the checked-in
download-free classifier, docs/metrics.md), SWD and MS-SSIM; IS/FID with
`--config.evals.metrics.inception_weights=FILE` and metrics 'is', 'fid'.
"""

import ml_collections
from ml_collections import config_dict

from itgan_jax.config_args import parse_arg, run_sections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, small=False)
  c = ml_collections.ConfigDict()
  c.variant = "gan"
  c.seed = 1
  c.num_devices = config_dict.placeholder(int)  # None: all devices

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"
  c.data.source = "auto"
  c.data.dir = config_dict.placeholder(str)
  c.data.tfds_data_dir = config_dict.placeholder(str)
  c.data.allow_download = False
  c.data.init_size = 500          # data-dependent init batch (official trainx[:500])
  c.data.scale = "cifar_official"  # (x - 127.5) / 128
  c.data.feeder = "auto"

  c.model = ml_collections.ConfigDict()
  c.model.name = "conv"
  c.model.z_dim = 100
  c.model.z_dist = "uniform01"    # official quirk: theano_rng.uniform default U(0, 1)
  c.model.g_norm = "batch"        # 'batch' (official) | 'vbn' | 'vbnl' | 'vbnlp' | 'none'
  c.model.g_channels = (512, 256, 128)
  c.model.vbn_ref_size = 100
  c.model.d_channels = (96, 192)
  c.model.d_input_noise = 0.0
  c.model.d_dropout = 0.2         # FM script: input dropout 0.2
  c.model.d_hidden_dropout = 0.5
  c.model.minibatch_kernels = 0   # minibatch discrimination B (0 = off; cifar10_md_gan.py: 100)
  c.model.minibatch_dim = 5

  c.loss = ml_collections.ConfigDict()
  c.loss.generator = "non_saturating"  # | 'minimax' | 'kl_target' | 'feature_matching'
  c.loss.label_smoothing = 1.0    # real target of D's loss; 1.0 = none
  c.loss.kl_target = 0.375
  c.loss.fm_distance = "l1"       # official CIFAR feature matching (if loss.generator says so)
  c.loss.fm_layer = -1            # the pooled 192-d features

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 3e-4
  c.optim.schedule = "linear_decay"  # 3e-4 * min(3 - epoch/400, 1)
  c.optim.schedule_kwargs = ml_collections.ConfigDict(dict(start_epoch=800, end_epoch=1200))
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.eps_inside_sqrt = True
  c.optim.g_ema_rate = 0.0        # EMA of G for samples/metrics (0 = off; ProGAN: 0.001)
  c.optim.historical_averaging_d = 0.0
  c.optim.historical_averaging_g = 0.0
  c.optim.historical_averaging_include_current = False

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 100
  c.train.num_epochs = 1200
  c.train.steps_per_epoch = config_dict.placeholder(int)  # None: 50000 // 100 = 500
  c.train.steps_per_call = 50
  c.train.g_steps_per_d_step = 1
  c.train.num_seeds = 1           # N > 1: seeds seed..seed+N-1 (and seed_data..) as one vmapped program
  c.train.xla_cpu_region_copy_analysis = True

  c.evals = ml_collections.ConfigDict()
  c.evals.samples = ml_collections.ConfigDict(dict(
      kind="sample_grid", every_epochs=1, num_samples=100))
  c.evals.metrics = ml_collections.ConfigDict(dict(
      kind="image_metrics", every_epochs=10,
      metrics=("classifier_score", "classifier_fd", "swd", "msssim"),
      num_samples=10000, reference="train", num_reference=config_dict.placeholder(int),
      swd_images=10000, msssim_images=10000,
      inception_weights=config_dict.placeholder(str)))

  # precision (float32 products), log, checkpoint: config_args.run_sections()
  c.update(run_sections())

  if args.small:  # a CPU-sized run: 1/9 of D's and 1/16 of G's multiply-adds
    c.model.d_channels = (32, 64)
    c.model.g_channels = (128, 64, 32)
    c.train.steps_per_epoch = 100   # 10,000 images per logged epoch
    c.train.steps_per_call = 25
    c.train.num_epochs = 1000       # resumable; stop whenever
    c.evals.metrics.every_epochs = 2
    c.evals.metrics.num_samples = 2048
    c.evals.metrics.swd_images = 2048
    c.evals.metrics.msssim_images = 2048
  if args.tiny:   # tests: seconds
    c.model.d_channels = (8, 16)
    c.model.g_channels = (32, 16, 8)
    c.model.vbn_ref_size = 8
    c.data.init_size = 32
    c.train.batch_size = 16
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 2
    c.train.steps_per_call = 1
    c.evals.samples.num_samples = 4
    c.evals.metrics.metrics = ()
    c.evals.metrics.num_samples = 64
  return c
