"""RP-GAN on MNIST (`variant='rpgan'`): configs/cifar10_rpgan.py's game on 1-channel digits.

No official MNIST experiment exists (papers.md C.1); this small preset runs the official algorithm
where the data is here. Changes from configs/cifar10_rpgan.py:
  * digits padded with the background (-1) to 32x32 (`data.pad_to=32`: the official D halves its
    input down to 2x2, so the side must be a power of two); G makes 32x32x1 and its samples are
    cropped back to 28x28 for the sample grids and metrics;
  * projections 8x8x1 -> 1, stride 2: 32x32x1 -> 16x16x1 (a 4x reduction: one input channel);
  * G 4x4x256 -> 8x8x128 -> 16x16x64 -> 32x32x1, df 32; K = 12 by default (`k=`, 0 = the
    full-image baseline);
  * 20 epochs of 60000 // 64 = 937 iterations; metrics: the MNIST classifier score, classifier FD and KID,
    SWD and MS-SSIM every 2 epochs on 10,000 samples.

Run (real MNIST from data.dir, e.g. ../shared/data):
  python -m itgan_jax.main --config=configs/mnist_rpgan.py --workdir=runs/mnist_rpgan12 \\
      --config.data.dir=../shared/data
  python -m itgan_jax.main --config=configs/mnist_rpgan.py:k=0 --workdir=runs/mnist_rpgan0 ...
CPU-sized (G 64, df 8, 100-iteration epochs, metrics on 2,048 samples every 2 epochs):
`:small`; smoke (seconds): `:tiny`. Expected result: no published number (papers.md C.5); compare
K projections with k=0 on the same metrics.
"""

import pathlib

import ml_collections

from itgan_jax.config_args import load_config_file, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, k=12, tiny=False, small=False)
  if args.k < 0:
    raise ValueError(f"config argument k={args.k} must be >= 0 (0 = the full-image baseline)")
  flags = ",".join([f"k={args.k}"] + [f for f in ("tiny", "small") if args[f]])
  c = load_config_file(f"{pathlib.Path(__file__).with_name('cifar10_rpgan.py')}:{flags}")
  c.data.name = "mnist"
  c.data.pad_to = 32
  c.model.g_features = 256
  c.model.d_features = 32
  c.train.num_epochs = 20
  c.evals.metrics.every_epochs = 2
  c.evals.metrics.metrics = ("mnist_score", "classifier_fd", "classifier_kid", "swd", "msssim")
  if args.small:
    c.model.g_features = 64
    c.model.d_features = 8
    c.train.num_epochs = 200
  if args.tiny:
    c.model.g_features = 16
    c.model.d_features = 4
    c.train.num_epochs = 2
    c.evals.metrics.metrics = ()
  return c
