"""ImageNet 128x128 with the official openai/improved-gan `imagenet/` code's networks and game.

Official settings (papers.md A.7; `train_imagenet.py`, `build_model.py`, `generator.py`,
`discriminator.py`): G z ~ U(-1, 1)^8192 -> linear 4x4x512 -> VBN (reference batch of 16) ->
5x5 stride-2 deconvs 256, 128, 64, 64, 64 with VBN and ReLU, U(-1, 1) per-pixel noise concatenated
after every level (64, 64, 32, 16, 8, 8 channels) -> stride-1 deconv to 3 channels (init std 0.075,
bias -0.45) -> tanh; D on the joint real||fake batch: input noise 0.1, 3x3 convs 64 s2, 128 s2,
256 s2, 256, 256, 512 s2, 512 s2 with BN-cross and lReLU 0.2 -> linear 2560 -> minibatch features
300 x 50 over the real and the fake half -> 1001 logits (1000 classes + fake); D loss = real KL
to 0.75 + fake CE + class CE (weight 1), G loss = KL to 0.375; Adam lr 4e-4, beta1 0.5 for both,
one simultaneous update per iteration; batch 16 per GPU on 4 GPUs (global 64 here); images
center-cropped to squares and resized to 128x128, scaled to [-1, 1].

Run on an image folder (root/<class>/*.JPEG, e.g. the extracted ILSVRC2012 train set) or a prepared
tfds copy (never downloaded; docs/data.md):
  python -m itgan_jax.main --config=configs/imagenet128.py --workdir=runs/imagenet128 \\
      --config.data.name=image_folder --config.data.dir=/data/imagenet/train
  python -m itgan_jax.main --config=configs/imagenet128.py --workdir=runs/imagenet128 \\
      --config.data.tfds_data_dir=~/tensorflow_datasets
A few real steps on a CPU (tiny widths, 128x128 images, a small folder):
  python -m itgan_jax.main --config=configs/imagenet128.py:tiny --workdir=/tmp/in_tiny \\
      --config.data.dir=FOLDER

Compute (full widths; XLA cost analysis of the forward passes): G 492 GFLOP for 64 samples plus
its 16 reference rows, D 155 GFLOP on the 128-row joint batch, so one iteration (a forward pass and
the two partial backward passes) is about 2 TFLOP; G and D hold 72M and 68M parameters. That is
GPU/TPU work (the official run trained for days on 4 GPUs); the `:tiny` preset runs on a CPU
(2 epochs x 2 steps of batch 4 at 128x128: 3.4 min wall on a loaded 2-core machine, nearly all
of it XLA compilation of the init, the step and the sampler; about 1.5 s per step after that). Decoding: 64 JPEGs per
iteration with `data.num_workers` threads per process, one chunk ahead of the devices.

Deliberate differences (docs/deviations.md, "ImageNet"): batch statistics (BN-cross, minibatch
features) are over the global batch, not over each GPU's 16 (VBN's are per example anyway); the epoch plan is a
permutation per (seed, epoch) instead of a shuffle queue over a pre-shuffled TFRecord; images are
decoded and resized on the fly (PIL bilinear) instead of read from pre-resized records; TF Adam
(eps 1e-8 outside the square root); a fixed sample grid draws each row's per-pixel noise from a
hash of its z.
"""

import ml_collections
from ml_collections import config_dict

from itgan_jax.config_args import parse_arg, run_sections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = ml_collections.ConfigDict()
  c.variant = "imagenet"
  c.seed = 1
  c.num_devices = config_dict.placeholder(int)  # None: all devices

  c.data = ml_collections.ConfigDict()
  c.data.name = "imagenet2012"     # | 'image_folder' (needs data.dir)
  c.data.dir = config_dict.placeholder(str)            # image folder root
  c.data.tfds_data_dir = config_dict.placeholder(str)  # prepared tfds copy of imagenet2012
  c.data.allow_download = False
  c.data.image_size = 128
  c.data.init_size = 16            # decoded once, shapes for the init pass (even: joint batch)
  c.data.scale = "tanh"            # x / 127.5 - 1 (official x * 2 / 255 - 1)
  c.data.num_workers = 8           # decoding threads per process
  c.data.prefetch = True           # decode the next chunk while the devices compute

  c.model = ml_collections.ConfigDict()
  c.model.name = "imagenet"
  c.model.z_dim = 8192
  c.model.z_dist = "uniform_pm1"
  c.model.gf_dim = 64
  c.model.df_dim = 64
  c.model.vbn_ref_size = 16        # official: the reference batch is one GPU's batch
  c.model.g_out_stddev = 0.075
  c.model.g_out_bias = -0.45
  c.model.d_input_noise = 0.1
  c.model.minibatch_kernels = 300
  c.model.minibatch_dim = 50

  c.loss = ml_collections.ConfigDict()
  c.loss.label_smoothing = 0.75    # real target (official d_label_smooth = .25)
  c.loss.kl_target = 0.375         # generator_target_prob = .75 / 2
  c.loss.class_weight = 1.0

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 4e-4
  c.optim.schedule = "constant"
  c.optim.schedule_kwargs = ml_collections.ConfigDict()
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.eps_inside_sqrt = False  # TF AdamOptimizer
  c.optim.historical_averaging_d = 0.0
  c.optim.historical_averaging_g = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64          # 16 per GPU x 4 GPUs
  c.train.num_epochs = 30
  c.train.steps_per_epoch = 2000   # a logged "epoch" of 128,000 images (None: one pass)
  c.train.steps_per_call = 20
  c.train.xla_cpu_region_copy_analysis = True

  c.evals = ml_collections.ConfigDict()
  c.evals.samples = ml_collections.ConfigDict(dict(
      kind="sample_grid", every_epochs=1, num_samples=64))

  # precision (float32 products), log, checkpoint: config_args.run_sections()
  c.update(run_sections())

  if args.tiny:  # a few real steps on a CPU: 128x128 images, tiny widths
    c.data.name = "image_folder"
    c.data.init_size = 4
    c.data.num_workers = 2
    c.model.z_dim = 32
    c.model.gf_dim = 4
    c.model.df_dim = 4
    c.model.vbn_ref_size = 2
    c.model.minibatch_kernels = 8
    c.model.minibatch_dim = 4
    c.train.batch_size = 4
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 2
    c.train.steps_per_call = 1
    c.evals.samples.num_samples = 4
  return c
