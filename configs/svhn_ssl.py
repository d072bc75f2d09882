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

Run (1000 labels, FM). 0.341 TFLOP per iteration (counted on the compiled program), 8.5 s per
iteration on 2 CPU cores (1.7 h per epoch), an estimated 1.6-3.1 h for the 900 epochs on one H100
at float32 (docs/compute.md, benchmarks/cifar_step.py --synthetic_data); on a CPU add
--config.checkpoint.every_steps=61:
  python -m itgan_jax.main --config=configs/svhn_ssl.py --workdir=runs/svhn_fm_1000 \
      --config.data.dir=/path/to/data   # holding svhn/train_32x32.mat, svhn/test_32x32.mat
Other label counts: --config=configs/svhn_ssl.py:labels=500 (or 2000); seeds:
--config.seed=2 --config.data.seed_data=2 (the paper averages 10 labeled subsets).
Minibatch discrimination (0.936 TFLOP per iteration, est. 4.3-8.5 h on one H100):
--config=configs/svhn_ssl.py:md
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

import pathlib

import ml_collections

from itgan_jax.config_args import load_config_file, parse_arg

LABEL_COUNTS = (500, 1000, 2000)  # the paper's Table 2 columns


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The CIFAR-10 scripts' config (configs/cifar10_ssl.py) with the SVHN scripts' changes."""
  args = parse_arg(arg, labels=1000, md=False, tiny=False)
  if args.labels not in LABEL_COUNTS:
    raise ValueError(f"config argument labels={args.labels} is not one of the paper's SVHN label "
                     f"counts {LABEL_COUNTS}; other totals (multiples of 10): "
                     "--config.data.num_labeled=N")
  preset = ",".join(k for k in ("md", "tiny") if args[k])
  c = load_config_file(str(pathlib.Path(__file__).with_name("cifar10_ssl.py"))
                       + (f":{preset}" if preset else ""))
  c.data.name = "svhn"            # train_32x32.mat, test_32x32.mat, or tfds svhn_cropped;
                                  # data.allow_download=True fetches the .mat files (246 MB)
  c.data.num_labeled = args.labels  # total, class-balanced (official --count is per class)
  c.data.subset_rng = "seed_data"  # both SVHN scripts have --seed_data (the CIFAR MD one has not)
  c.data.scale = "svhn_official"  # (x - 127.5) / 127.5
  if not args.md:
    c.model.d_channels = (64, 128)  # SVHN FM D (the CIFAR D and the SVHN MD D have 96/192)
  c.optim.schedule_kwargs.start_epoch = 600  # 3e-4 * min(3 - epoch/300, 1)
  c.optim.schedule_kwargs.end_epoch = 900
  c.train.num_epochs = 2 if args.tiny else 900  # 73257 // 100 = 732 iterations per epoch
  c.train.steps_per_call = 61     # 732 = 12 x 61: whole chunks per epoch
  c.evals.test_error.batch_size = 100  # official test batches of 100, the last one overlapping
  c.evals.metrics.metrics = ()    # e.g. --config.evals.metrics.metrics="('swd','msssim')"
  c.evals.metrics.every_epochs = 10
  if args.tiny:  # tests and smoke runs: tiny widths, 2 epochs of 2 iterations, 20 test images
    c.model.d_channels = (8, 16)
    c.data.num_labeled = 20
    c.data.init_size = 16
    c.train.batch_size = 8
    c.train.steps_per_call = 1
    c.evals.test_error.batch_size = 8   # 20 test images: batches [0, 8), [8, 16), [12, 20)
    c.evals.test_error.max_examples = 20
  return c
