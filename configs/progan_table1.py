"""The ProGAN paper's Table 1 rows (a)-(h) at 128x128 on an image folder the user supplies.

Karras et al. 2018, Table 1 (CelebA 128x128 and LSUN bedroom; papers.md B.7, E.3): each row adds
one change to the previous one. Data: an image folder (e.g. CelebA aligned crops, or LSUN
bedroom exported to JPEG), centre-cropped and resized to 128x128, streamed from disk:
  python -m itgan_jax.main --config=configs/progan_table1.py:row=h \\
      --config.data.dir=/data/celeba --workdir=runs/progan_table1_h
Rows (`:row=`):
  a  Gulrajani et al. (WGAN-GP) setup, trained directly at 128x128 (no growing): n_critic 5,
     Adam lr 1e-4 (0, 0.9), minibatch 64, latent 128 without normalisation, ReLU and batch norm
     in G, tanh output, layer norm in D, no drift term, no equalized lr, no pixel norm, no mbstd
  b  + progressive growing (800k-image stabilise and fade phases)
  c  + small minibatch: 16 (G EMA adjusted, 0.999^5 per step instead of 0.999^20)
  d  + revised training parameters: n_critic 1, Adam beta2 0.99, drift 0.001, lReLU, no batch /
     layer norm, no tanh, G EMA 0.999 (our reading of the paper text; the official repository
     has no per-row config)
  e_star  + minibatch discrimination (100 kernels) in D
  e  minibatch stddev instead (whole minibatch)
  f  + equalized learning rate (lr 1e-3)
  g  + pixelwise feature normalisation
  h  converged: (g) trained longer (here: the 10M images of every row; the paper trained (h)
     to convergence, so more images via --config.train.num_epochs)
Common: fmap_base 2048, fmap_max 512 (nf(stage) = min(2048 / 2^stage, 512): 512 maps at 4x4
and 8x8 down to 32 at 128x128), 10M images, WGAN-GP gamma 1, lambda 10, simultaneous updates from (d) on (TF
alternates; rows a-c alternate with n_critic 5). Metrics: SWD (levels 128, 64, 32, 16) on 16,384
images and MS-SSIM on 10,000 pairs, as the paper; every 10 epochs here.
An "epoch" is 200,000 images (`train.steps_per_epoch`), so 10M images = 50 epochs; each row is a
multi-GPU-day job (docs/compute.md).
"""

import pathlib

import ml_collections

from itgan_jax.config_args import load_config_file, parse_arg

ROWS = ("a", "b", "c", "d", "e_star", "e", "f", "g", "h")
IMAGES_PER_EPOCH = 200_000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, row="h", tiny=False)
  if args.row not in ROWS:
    raise ValueError(f"configs/progan_table1.py: row={args.row!r} is not one of {ROWS}")
  c = load_config_file(str(pathlib.Path(__file__).with_name("cifar10_progan.py")))
  rank = ROWS.index(args.row)

  c.data.name = "image_folder"
  c.data.image_size = 128
  c.data.num_workers = 8
  c.data.prefetch = True
  c.data.init_size = 16
  c.evals.metrics.metrics = ("swd", "msssim")
  c.evals.metrics.every_epochs = 10
  c.evals.metrics.num_samples = 16384
  c.evals.metrics.num_reference = 16384
  c.evals.metrics.swd_images = 16384
  c.evals.metrics.msssim_images = 20000
  c.evals.samples.every_epochs = 1

  c.model.fmap_base = 2048
  c.model.fmap_max = 512
  c.model.z_dim = 128
  c.schedule.initial_resolution = 128 if args.row == "a" else 4
  c.schedule.stabilize_kimg = 800.0
  c.schedule.fade_kimg = 800.0
  c.loss.gp_target = 1.0

  old = rank <= ROWS.index("c")               # the Gulrajani et al. training setup
  c.train.batch_size = 64 if rank <= ROWS.index("b") else 16
  c.train.update = "alternating" if old else "simultaneous"
  c.train.d_steps_per_g_step = 5 if old else 1
  c.optim.b2 = 0.9 if old else 0.99
  c.loss.drift = 0.0 if old else 0.001
  c.optim.g_ema_rate = 1 - 0.999 ** (20 if c.train.batch_size == 64 else 5) if old else 0.001
  c.model.normalize_latents = not old
  c.model.g_activation = "relu" if old else "lrelu"
  c.model.tanh_output = old
  c.model.d_layer_norm = old
  c.model.g_norm = "batch" if old else ("pixel" if rank >= ROWS.index("g") else "none")
  c.model.minibatch_kernels = 100 if args.row == "e_star" else 0
  c.model.mbstd_group_size = None if rank >= ROWS.index("e") else 0   # 0 = off
  c.model.use_wscale = rank >= ROWS.index("f")
  c.optim.lr = 1e-3 if rank >= ROWS.index("f") else 1e-4

  c.train.steps_per_epoch = IMAGES_PER_EPOCH // c.train.batch_size
  c.train.num_epochs = 10_000_000 // IMAGES_PER_EPOCH
  c.train.steps_per_call = 125
  if args.tiny:   # tests: a 16x16 image folder, tiny networks
    c.data.image_size = 16
    c.data.init_size = 4
    c.model.fmap_base = 32
    c.model.fmap_max = 8
    c.model.z_dim = 8
    c.schedule.initial_resolution = 16 if args.row == "a" else 4
    c.schedule.stabilize_kimg = 0.008
    c.schedule.fade_kimg = 0.008
    c.train.batch_size = 4
    c.train.steps_per_epoch = 4
    c.train.num_epochs = 2
    c.train.steps_per_call = 2
    c.data.num_workers = 2
    c.evals.samples.num_samples = 4
    c.evals.metrics.metrics = ()
    c.evals.metrics.num_samples = 16
  return c
