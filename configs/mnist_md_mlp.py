"""MNIST minibatch discrimination on the MNIST MLPs: the CPU-sized Fig. 3 (right) experiment.

The faithful setup of the work-in-progress official MNIST MD script is `configs/mnist_md.py` (the
CIFAR conv D adapted to 28x28, papers.md A.0); it costs about 1 TFLOP per iteration, i.e. days per
run on a 2-core CPU. This config keeps everything of that setup that is not the conv net, on the
networks of the official MNIST feature-matching script (`configs/mnist_ssl.py`), so the sample
comparison with the feature-matching model isolates the MD technique and the G objective:
  * D = the official MNIST MLP D (Gaussian noise 0.3 / 0.5, weight-normalised dense
    1000-500-250-250-250, ReLU) with the official `MinibatchLayer` (100 kernels x 5, data-dependent
    init) after the last hidden layer, where the CIFAR/SVHN MD scripts put it (after the last
    hidden features), reading those features before D's noise (models/mnist.py says why); D is
    called on pure labeled / unlabeled / generated batches (minibatch statistics within each);
  * G = the official MNIST G (U(0, 1)^100 -> dense 500-500 with batch norm and softplus ->
    weight-normalised sigmoid 784);
  * from the WIP MD script: 400 labels per class, saturating minimax G loss with 3 G steps per D
    step, Adam (beta1 0.5, eps inside the sqrt) lr 3e-4 with min(2.5 - epoch/200, 1) (flat to
    epoch 300, zero at 500), 500 epochs, test error in batches of 100 (minibatch features depend
    on the batch), zero-initialised EMA test parameters.
Cost: about 5.5 GFLOP per iteration (vs 4.2 for the FM script), one to two minutes per epoch here.

Run (the whole WIP schedule):
  python -m itgan_jax.main --config=configs/mnist_md_mlp.py --workdir=runs/mnist_md_mlp \
      --config.data.dir=/path/to/mnist
A shorter run keeps the flat learning rate: --config.train.num_epochs=40.
Smoke run: --config=configs/mnist_md_mlp.py:tiny
"""

import pathlib

import ml_collections

from itgan_jax.config_args import load_config_file, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  here = pathlib.Path(__file__).parent
  suffix = ":tiny" if args.tiny else ""
  c = load_config_file(str(here / "mnist_md.py") + suffix)        # the WIP MD training setup
  c.model = load_config_file(str(here / "mnist_ssl.py") + suffix).model  # ... on the MNIST MLPs
  c.model.minibatch_kernels = 100    # official MinibatchLayer B x C (CIFAR/SVHN MD scripts)
  c.model.minibatch_dim = 5
  c.data.scale = "unit"              # x / 255: the MLP G's output is a sigmoid
  return c
