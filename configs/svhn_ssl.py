"""SVHN semi-supervised K+1 GAN (Salimans et al. 2016, Table 2): feature matching or :md.

Reproduces `openai/improved-gan mnist_svhn_cifar10/train_svhn_feature_matching.py` (default) and
`train_svhn_minibatch_discrimination.py` (`:md`), papers.md A.3:
  * data: the 73,257 `train_32x32.mat` images (no "extra"), the whole 26,032-image test set,
    (x - 127.5) / 127.5; labels class-balanced from RandomState(seed_data) (`:labels=`, total);
  * FM: D = weight-normalised conv net 64/128 channels (lReLU 0.2, NIN, global average pool,
    dense 10), input dropout 0.2, hidden dropout 0.5; G = the CIFAR BN deconv G (U(0, 1)^100 ->
    4x4x512 -> 256 -> 128 -> 32x32x3 tanh); G loss = L1 distance of the mean pooled 128-d D
    features of a generated batch and of a second, independently shuffled unlabeled batch;
    1 G step per D step;
  * MD: D = the CIFAR MD D (96/192 channels, Gaussian input noise 0.2 instead of dropout,
    minibatch layer 100 kernels x 5 between the pool and the dense layer), saturating minimax G
    loss log(1 - D(G(z))), 3 G steps per D step;
  * both: Adam lr 3e-4 (beta1 0.5, eps inside the sqrt) flat to epoch 600, linear to 0 at 900
    (official 3e-4 * min(3 - epoch/300, 1)), batch 100, 732 iterations per epoch, 900 epochs,
    zero-initialised EMA test parameters (rate 1e-4), data-dependent init on 500 images; test
    error every epoch in batches of 100, the last batch overlapping (the last 100 images), as the
    official scripts.
Paper, test error % (Table 2; FM): 18.44 +/- 4.8 (500 labels), 8.11 +/- 1.3 (1000),
6.16 +/- 0.58 (2000). The MD script is the paper's "MD does not work for SSL" comparison.

Run (1000 labels, FM). About 0.66 TFLOP per iteration (D 64/128: 0.24 GFLOP per image
forward; G 0.86 GFLOP per image), 480 TFLOP per epoch, 900 epochs: hours on one modern GPU
(roughly 3-10 h; not measured here), beyond a CPU (~13 s per iteration on 2 cores, 2.7 h per
epoch):
  python -m itgan_jax.main --config=configs/svhn_ssl.py --workdir=runs/svhn_fm_1000 \
      --config.data.dir=/path/to/data   # holding svhn/train_32x32.mat, svhn/test_32x32.mat
Other label counts: --config=configs/svhn_ssl.py:labels=500 (or 2000); seeds:
--config.seed=2 --config.data.seed_data=2 (the paper averages 10 labeled subsets).
Minibatch discrimination (about 1.8 TFLOP per iteration): --config=configs/svhn_ssl.py:md
(combine: :md,labels=500). Smoke run (tiny networks, 2 epochs of 2 iterations, 20 test images;
about a minute on 2 CPU cores, mostly XLA compilation): :tiny (or :md,tiny).

Deliberate differences from the official scripts (docs/deviations.md):
  * images are NHWC in their true orientation; the official loader's transpose (3, 2, 0, 1)
    stores them H/W-transposed (papers.md A.5 quirk 7): same accuracy, upright samples;
  * the data-dependent-init batch is 500 images of the seed_data permutation of the whole
    training set; the official scripts use the first 500 of their first epoch's tiling of the
    labeled set (also random training images);
  * the MD script's test error is the mean of its 261 per-batch error rates (the overlapping
    images of the last batch count twice); we report errors per test image, as the FM script;
  * epoch order from (seed, epoch), JAX random numbers (as every config here).
"""

import ml_collections
from ml_collections import config_dict

from itgan_jax.config_args import parse_arg, run_sections

LABEL_COUNTS = (500, 1000, 2000)  # the paper's Table 2 columns


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, labels=1000, md=False, tiny=False)
  if args.labels not in LABEL_COUNTS:
    raise ValueError(f"config argument labels={args.labels} is not one of the paper's SVHN label "
                     f"counts {LABEL_COUNTS}; other totals (multiples of 10): "
                     "--config.data.num_labeled=N")
  c = ml_collections.ConfigDict()
  c.variant = "ssl"
  c.seed = 1                      # official --seed (weights, noise, data order)
  c.num_devices = config_dict.placeholder(int)  # None: all devices

  c.data = ml_collections.ConfigDict()
  c.data.name = "svhn"
  c.data.source = "auto"          # 'auto' | 'files' | 'tfds' (svhn_cropped)
  c.data.dir = config_dict.placeholder(str)            # train_32x32.mat, test_32x32.mat
  c.data.tfds_data_dir = config_dict.placeholder(str)  # prepared tfds ArrayRecord copy
  c.data.allow_download = False   # True: fetch the .mat files from ufldl.stanford.edu (246 MB)
  c.data.num_labeled = args.labels  # total, class-balanced (official --count is per class)
  c.data.seed_data = 1            # official --seed_data: labeled-subset permutation
  c.data.init_size = 500          # data-dependent init batch (official trainx[:500])
  c.data.scale = "svhn_official"  # (x - 127.5) / 127.5
  c.data.feeder = "auto"

  c.model = ml_collections.ConfigDict()
  c.model.name = "conv"
  c.model.z_dim = 100
  c.model.z_dist = "uniform01"    # official quirk: theano_rng.uniform default U(0, 1)
  c.model.g_norm = "batch"        # official nn.batch_norm(g=None) | 'vbn' | 'vbnl' | 'vbnlp' | 'none'
  c.model.g_channels = (512, 256, 128)
  c.model.vbn_ref_size = 100
  c.model.d_channels = (64, 128)  # SVHN FM D (the CIFAR D has 96/192)
  c.model.d_input_noise = 0.0
  c.model.d_dropout = 0.2         # FM script: input dropout 0.2
  c.model.d_hidden_dropout = 0.5
  c.model.minibatch_kernels = 0   # minibatch discrimination B (0 = off; :md 100)
  c.model.minibatch_dim = 5

  c.loss = ml_collections.ConfigDict()
  c.loss.generator = "feature_matching"  # :md 'minimax'
  c.loss.fm_distance = "l1"       # official T.mean(abs(m1 - m2)) of the batch means
  c.loss.fm_layer = -1            # the pooled 128-d features (official disc_layers[-2])
  c.loss.unlabeled_weight = 1.0
  c.loss.label_smoothing = 1.0    # 1.0 = none (not in the official SVHN scripts)
  c.loss.kl_target = 0.375

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 3e-4
  c.optim.schedule = "linear_decay"  # 3e-4 * min(3 - epoch/300, 1)
  c.optim.schedule_kwargs = ml_collections.ConfigDict(dict(start_epoch=600, end_epoch=900))
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.eps_inside_sqrt = True  # official nn.adam_updates: m_hat / sqrt(v_hat + 1e-8)
  c.optim.ema_rate = 1e-4         # Polyak test parameters a <- a + 1e-4 (p - a)
  c.optim.ema_zero_init = True    # official: initialised at zero, no bias correction
  c.optim.ema_debias = False
  c.optim.historical_averaging_d = 0.0
  c.optim.historical_averaging_g = 0.0
  c.optim.historical_averaging_include_current = False

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 100
  c.train.num_epochs = 900
  c.train.steps_per_epoch = config_dict.placeholder(int)  # None: 73257 // 100 = 732
  c.train.steps_per_call = 61     # 732 = 12 x 61: whole chunks per epoch
  c.train.g_steps_per_d_step = 1
  c.train.num_seeds = 1           # N > 1: seeds seed..seed+N-1 (and seed_data..) as one vmapped program
  c.train.xla_cpu_region_copy_analysis = True

  c.evals = ml_collections.ConfigDict()
  c.evals.test_error = ml_collections.ConfigDict(dict(
      kind="classifier_error", every_epochs=1,
      batch_size=100,             # official test batches of 100, the last one overlapping
      max_examples=config_dict.placeholder(int)))  # None: all 26,032 test images (official)
  c.evals.samples = ml_collections.ConfigDict(dict(
      kind="sample_grid", every_epochs=1, num_samples=100))
  # Image metrics of G (docs/metrics.md), e.g. --config.evals.metrics.metrics="('swd','msssim')".
  c.evals.metrics = ml_collections.ConfigDict(dict(
      kind="image_metrics", every_epochs=10, metrics=(), num_samples=10000,
      reference="train", num_reference=config_dict.placeholder(int)))

  # precision (float32 products), log, checkpoint: config_args.run_sections()
  c.update(run_sections())

  if args.md:  # train_svhn_minibatch_discrimination.py: the CIFAR MD D
    c.model.d_channels = (96, 192)
    c.model.d_input_noise = 0.2   # Gaussian input noise instead of input dropout
    c.model.d_dropout = 0.0
    c.model.minibatch_kernels = 100
    c.loss.generator = "minimax"  # G minimises log(1 - D(G(z)))
    c.train.g_steps_per_d_step = 3
  if args.tiny:  # tests and smoke runs: tiny widths, 2 epochs of 2 iterations, 20 test images
    c.model.d_channels = (8, 16)
    c.model.g_channels = (32, 16, 8)
    c.model.vbn_ref_size = 8
    if args.md:
      c.model.minibatch_kernels = 8
    c.data.num_labeled = 20
    c.data.init_size = 16
    c.train.batch_size = 8
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 2
    c.train.steps_per_call = 1
    c.evals.test_error.batch_size = 8   # 20 test images: batches [0, 8), [8, 16), [12, 20)
    c.evals.test_error.max_examples = 20
    c.evals.samples.num_samples = 4
    c.evals.metrics.num_samples = 64
  return c
