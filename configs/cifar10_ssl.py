"""CIFAR-10 semi-supervised GAN (Salimans et al. 2016, Table 2), the official conv scripts.

Default: `openai/improved-gan mnist_svhn_cifar10/train_cifar_feature_matching.py` (papers.md A.3):
  * D: weight-normalised 9-layer conv net (96/192 channels, lReLU 0.2, NIN layers, global average
    pool, dense 10 with a trainable scale), input dropout 0.2, dropout 0.5 after each stride-2
    block, hidden scales frozen after data-dependent init; the K+1 loss with the fake logit fixed at 0;
  * G: U(0, 1)^100 -> dense 4x4x512 -> BN -> ReLU -> 5x5 stride-2 deconvs 256, 128 (BN, ReLU) ->
    weight-normalised deconv to 32x32x3 -> tanh;
  * G loss: L1 feature matching mean|E f(x_unl2) - E f(G(z))| on the pooled 192-d features of a
    second, independently shuffled unlabeled stream (`loss.fm_distance=l2` for the paper's ||.||^2);
  * Adam (lr 3e-4, beta1 0.5, eps inside the sqrt) flat to epoch 800, linear to 0 at 1200; batch 100
    labeled + 100 unlabeled; 500 iterations per epoch; data (x - 127.5) / 128; test error of the
    zero-initialised EMA parameters (rate 1e-4) on the 10,000 test images after every epoch.
`:md` is `train_cifar_minibatch_discrimination.py`: Gaussian input noise 0.2 instead of input
dropout, `MinibatchLayer(100 kernels x 5)` between the pool and the dense layer, the saturating
minimax G loss log(1 - D(G(z))), 3 G steps per D step, test batches of 100 (the minibatch features
of a test image depend on its batch), and the labeled subset drawn from `--seed`'s RandomState after
the two draws that seed Theano and Lasagne (the MD script has no --seed_data).

Paper (test error %, mean +/- std over 10 labeled subsets, papers.md E.1): 1000 labels 21.83 +/- 2.01,
2000 19.61 +/- 2.09, 4000 18.63 +/- 2.32, 8000 17.72 +/- 1.82; ensemble of 10 at 4000: 15.59 +/- 0.47.

Run (1200 epochs = 600k iterations of one D step on 3 x 100 images and one G step; 0.68 TFLOP per
iteration (:md 0.94), 13 s per iteration on 2 CPU cores (:md 20 s), an estimated 3-6 h on one H100
at float32 (:md 4-8 h): docs/compute.md, benchmarks/cifar_step.py. RESULTS.md has our run):
  python -m itgan_jax.main --config=configs/cifar10_ssl.py --workdir=runs/cifar10_ssl_4000
On a CPU add --config.checkpoint.every_steps=50 (an epoch takes about 2 hours).
Label counts: --config=configs/cifar10_ssl.py:labels=1000 (1000/2000/4000/8000);
minibatch discrimination: --config=configs/cifar10_ssl.py:md; a table cell over 10 subsets:
experiments/table.py. Smoke run (seconds): --config=configs/cifar10_ssl.py:tiny

Deliberate differences (docs/deviations.md): the epoch order comes from a generator seeded by
(seed, epoch) (resumable) instead of one RandomState stream; the data-dependent init batch is 500
training images of the seed_data permutation (official: the first 500 of epoch 0's tiled labeled
stream, i.e. 500 labeled images); random numbers come from JAX's PRNG instead of Theano's MRG.
"""

import ml_collections
from ml_collections import config_dict

from itgan_jax.config_args import parse_arg, run_sections

LABEL_COUNTS = (1000, 2000, 4000, 8000)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, labels=4000, md=False, small=False, tiny=False)
  if args.labels not in LABEL_COUNTS:
    raise ValueError(f"configs/cifar10_ssl.py:labels={args.labels}; the paper's cells are "
                     f"{LABEL_COUNTS} (set --config.data.num_labeled for other counts)")
  c = ml_collections.ConfigDict()
  c.variant = "ssl"
  c.seed = 1                      # official --seed (weights, noise, data order)
  c.num_devices = config_dict.placeholder(int)  # None: all devices

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"
  c.data.source = "auto"          # 'auto' | 'files' | 'tfds'
  c.data.dir = config_dict.placeholder(str)            # cifar-10-python.tar.gz (or $ITGAN_DATA_DIR)
  c.data.tfds_data_dir = config_dict.placeholder(str)
  c.data.allow_download = False
  c.data.num_labeled = args.labels  # total, class-balanced (official --count 400 per class)
  c.data.seed_data = 1            # official --seed_data: labeled-subset permutation
  c.data.subset_rng = "seed_data"  # FM script; MD script: 'seed' (see the module docstring)
  c.data.init_size = 500          # data-dependent init batch
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
  c.model.minibatch_kernels = 0   # minibatch discrimination B (0 = off; :md 100)
  c.model.minibatch_dim = 5

  c.loss = ml_collections.ConfigDict()
  c.loss.generator = "feature_matching"  # | 'minimax' (MD script) | 'non_saturating' | 'kl_target'
  c.loss.fm_distance = "l1"       # official: mean |E f_real - E f_gen| ('l2': the paper's ||.||^2)
  c.loss.fm_layer = -1            # the pooled 192-d features (official disc_layers[-2])
  c.loss.unlabeled_weight = 1.0
  c.loss.label_smoothing = 1.0    # real target of the GAN part of D's loss; 1.0 = none
  c.loss.kl_target = 0.375

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 3e-4
  c.optim.schedule = "linear_decay"  # 3e-4 * min(3 - epoch/400, 1)
  c.optim.schedule_kwargs = ml_collections.ConfigDict(dict(start_epoch=800, end_epoch=1200))
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.eps_inside_sqrt = True
  c.optim.ema_rate = 1e-4
  c.optim.ema_zero_init = True
  c.optim.ema_debias = False
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
  c.evals.test_error = ml_collections.ConfigDict(dict(
      kind="classifier_error", every_epochs=1,
      batch_size=500,             # D is batch-independent without minibatch features (:md: 100)
      max_examples=config_dict.placeholder(int)))  # None: the whole test set (official)
  c.evals.samples = ml_collections.ConfigDict(dict(
      kind="sample_grid", every_epochs=1, num_samples=100))
  # Generator metrics (docs/metrics.md); 'is' / 'fid' need --config.evals.metrics.inception_weights.
  c.evals.metrics = ml_collections.ConfigDict(dict(
      kind="image_metrics", every_epochs=50,
      metrics=("classifier_score", "classifier_fd"),
      num_samples=10000, reference="train", num_reference=config_dict.placeholder(int),
      inception_weights=config_dict.placeholder(str)))

  # precision (float32 products), log, checkpoint: config_args.run_sections()
  c.update(run_sections())

  if args.md:  # train_cifar_minibatch_discrimination.py
    c.data.subset_rng = "seed"
    c.model.d_input_noise = 0.2
    c.model.d_dropout = 0.0
    c.model.minibatch_kernels = 100
    c.loss.generator = "minimax"
    c.train.g_steps_per_d_step = 3
    c.evals.test_error.batch_size = 100
  if args.small:  # a CPU-sized run: 1/9 of D's and 1/16 of G's multiply-adds, 100-step epochs
    c.model.d_channels = (32, 64)
    c.model.g_channels = (128, 64, 32)
    c.train.steps_per_epoch = 100
    c.train.steps_per_call = 25
    c.evals.metrics.every_epochs = 10
    c.evals.metrics.num_samples = 2048
  if args.tiny:   # tests: seconds
    c.model.d_channels = (8, 16)
    c.model.g_channels = (32, 16, 8)
    c.model.vbn_ref_size = 8
    c.data.init_size = 32
    c.train.batch_size = 16
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 2
    c.train.steps_per_call = 1
    c.evals.test_error.batch_size = 16
    c.evals.test_error.max_examples = 64
    c.evals.samples.num_samples = 4
    c.evals.metrics.metrics = ()
    c.evals.metrics.num_samples = 64
    if args.md:
      c.model.minibatch_kernels = 8
  return c
