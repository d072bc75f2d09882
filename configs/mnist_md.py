"""MNIST generation with minibatch discrimination (Salimans et al. 2016, Fig. 3 samples).

No final official script exists (papers.md A.0): the work-in-progress `train_mnist_minibatch.py`
(deleted in 4c858bb) was the CIFAR minibatch-discrimination model adapted to 1x28x28. We follow it:
  * D = the official CIFAR MD discriminator (weight-normalised convs 96/192, lReLU, Gaussian input
    noise 0.2, minibatch layer 100 kernels x 5, K+1 head), first conv padded by 3 (28 -> 32);
  * G = the official deconv G with batch norm, adapted to 28x28: dense 7x7x256 -> deconv 14x14x128
    -> weight-normalised deconv 28x28x1 -> tanh (our choice of widths; the WIP file's exact widths
    are not recoverable), images scaled to [-1, 1];
  * saturating minimax G loss, 3 G steps per D step, 400 labels per class (4000), lr 3e-4 with
    the WIP decay min(2.5 - epoch/200, 1) (flat to epoch 300, zero at 500), 500 epochs.

Run (expected several hours per 10 epochs on 2 CPU cores; use an accelerator for the full run):
  python -m itgan_jax.main --config=configs/mnist_md.py --workdir=runs/mnist_md
Smoke run: --config=configs/mnist_md.py:tiny
"""

import pathlib

import ml_collections

from itgan_jax.config_args import load_config_file, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = load_config_file(str(pathlib.Path(__file__).with_name("mnist_ssl.py")) +
                       (":tiny" if args.tiny else ""))
  c.data.num_labeled = 4000          # WIP script: 400 labels per class
  c.data.scale = "tanh"              # G output is tanh
  c.model = ml_collections.ConfigDict(dict(
      name="conv", z_dim=100, z_dist="uniform01",
      g_norm="batch", g_channels=(256, 128), vbn_ref_size=100,
      d_channels=(96, 192), d_input_noise=0.2, d_input_dropout=0.0,
      minibatch_kernels=100, minibatch_dim=5))
  c.loss.generator = "minimax"       # official MD scripts: G minimises log(1 - D(G(z)))
  c.optim.lr = 3e-4
  c.optim.schedule = "linear_decay"
  c.optim.schedule_kwargs = ml_collections.ConfigDict(dict(start_epoch=300, end_epoch=500))
  c.train.g_steps_per_d_step = 3
  c.train.num_epochs = 2 if args.tiny else 500
  c.train.steps_per_call = 2 if args.tiny else 50
  if args.tiny:
    c.eval.max_examples = 200        # the conv D costs ~1 GFLOP per image: keep smoke runs short
    c.eval.batch_size = 100
    c.log.num_samples = 16
  return c
