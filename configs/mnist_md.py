"""MNIST generation with minibatch discrimination (Salimans et al. 2016, Sec. 3.2 and Fig. 3 samples).

No final official script exists (papers.md A.0): the work-in-progress `train_mnist_minibatch.py`
(deleted in 4c858bb) was `train_cifar_minibatch_discrimination.py` adapted to 1x28x28. We follow it:
  * D = the official CIFAR MD discriminator: weight-normalised convs 96/192 (lReLU 0.2, hidden scales
    frozen after data-dependent init), Gaussian input noise 0.2, dropout 0.5 after each stride-2
    block, global average pool, `MinibatchLayer` 100 kernels x 5, weight-normalised dense 10 (K+1
    head); the first conv is padded by 3 (WIP script), so 28x28 -> 32x32 and the rest is unchanged;
  * G = the official deconv G with batch norm (no scale, eps 1e-6, statistics per unit after the
    dense layer, per channel after the deconvs), adapted to 28x28: z ~ U(0, 1)^100 -> dense 7x7x256
    -> 5x5 stride-2 deconv 14x14x128 -> weight-normalised 5x5 stride-2 deconv 28x28x1 -> tanh;
  * semi-supervised K+1 loss with 400 labels per class (4000) and 60k unlabeled images, saturating
    minimax G loss -mean(softplus(LSE(gen))) with 3 G steps per D step, Adam (beta1 0.5, eps inside
    the sqrt), batch 100, lr 3e-4 with the WIP decay min(2.5 - epoch/200, 1) (flat to epoch 300,
    zero at 500), 500 epochs of 600 iterations, zero-initialised EMA test parameters.

Deliberate choices (the WIP file is not recoverable beyond the points above):
  * G widths 256/128 from a 7x7 start (28 = 7 * 2 * 2); the CIFAR G's 4x4x512 start cannot reach 28.
  * Images scaled to [-1, 1] (x / 127.5 - 1, matching the tanh output; CIFAR used (x - 127.5) / 128).
  * Test error is computed in batches of 100 (evals.test_error.batch_size) as the official `test_batch`: the
    minibatch features of a test image depend on the other 99 images of its batch.
  * Data-dependent init on 500 training images of the seed_data permutation (the CIFAR MD script
    used the first 500 of its tiled labeled set).

Run (500 epochs; 300k iterations of one D step on 3 x 100 images plus three G steps, ~1 TFLOP each:
days on an accelerator-less machine, roughly 6-10 hours on one modern GPU):
  python -m itgan_jax.main --config=configs/mnist_md.py --workdir=runs/mnist_md \
      --config.data.dir=/path/to/mnist
Variants: --config.model.g_norm=vbn (virtual batch norm in G, as the paper's CIFAR samples),
--config.loss.label_smoothing=0.75 (one-sided label smoothing), --config.loss.generator=feature_matching
(the FM objective on the same networks, for the sample comparison; also set --config.loss.fm_distance=l1
as the CIFAR FM script).
Smoke run (2 epochs of 4 iterations, 200 test images; minutes on 2 CPU cores):
  python -m itgan_jax.main --config=configs/mnist_md.py:tiny --workdir=/tmp/mnist_md_tiny
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
      g_norm="batch",                # 'batch' (official) | 'vbn' | 'vbnl' | 'vbnlp' | 'none'
      g_channels=(256, 128),
      vbn_ref_size=100,              # reference batch of VBN (one extra G pass on these rows)
      d_channels=(96, 192),
      d_input_noise=0.2,             # MD scripts: Gaussian input noise ...
      d_dropout=0.0,                 # ... instead of the FM scripts' input dropout 0.2
      d_hidden_dropout=0.5,
      minibatch_kernels=100, minibatch_dim=5))
  c.loss.generator = "minimax"       # official MD scripts: G minimises log(1 - D(G(z)))
  c.optim.lr = 3e-4
  c.optim.schedule = "linear_decay"  # min(2.5 - epoch/200, 1)
  c.optim.schedule_kwargs = ml_collections.ConfigDict(dict(start_epoch=300, end_epoch=500))
  c.train.g_steps_per_d_step = 3
  c.train.num_epochs = 2 if args.tiny else 500
  c.train.steps_per_call = 2 if args.tiny else 50
  c.evals.test_error.batch_size = 100  # official test batches of 100 (minibatch features)
  if args.tiny:
    c.evals.test_error.max_examples = 200  # the conv D costs ~0.5 GFLOP per image: keep smoke runs short
    c.evals.samples.num_samples = 16
  return c
