"""MNIST semi-supervised GAN with feature matching (Salimans et al. 2016, Table 1).

Reproduces `openai/improved-gan mnist_svhn_cifar10/train_mnist_feature_matching.py` (papers.md A.3):
permutation-invariant weight-normalised MLP D with Gaussian noise, BN/softplus MLP G with sigmoid
output, K+1 loss, squared-error feature matching on D's last 250-unit layer, Adam (lr 0.003, beta1
0.5, eps inside the sqrt), batch 100, 600 iterations per epoch, 300 epochs, zero-initialised EMA
test parameters (rate 1e-4).

Run (paper protocol, 100 labels; 300 epochs take 1.2-1.5 h on 2 AVX-512 CPU cores and about
2.5 h on 2 older cores, RESULTS.md):
  python -m itgan_jax.main --config=configs/mnist_ssl.py --workdir=runs/mnist_ssl_100
Other label counts (20/50/100/200): --config=configs/mnist_ssl.py:labels=50
Short demo (`make demo`): --config=configs/mnist_ssl.py:demo
The script as of the paper's first version (arXiv v1, 2016-06-10; the repository before "param
averaging everywhere", 0fa06b5 of 2016-06-14): --config=configs/mnist_ssl.py:prerelease, i.e.
lr 0.001 * min(3 - epoch/100, 1) (flat to epoch 200, zero at 300) and the test error of the raw
parameters (that script had no EMA; our logs report both, `test_errors_raw` is its number).
Paper: 93 +/- 6.5 test errors with 100 labels (20: 1677 +/- 452, 200: 90 +/- 4.2).
RESULTS.md has our runs of both protocols; :prerelease comes much closer to the paper.

Deliberate differences from the official script (docs/deviations.md):
  * The epoch's data order comes from a generator seeded by (seed, epoch) instead of one
    RandomState stream, so any epoch can be regenerated on resume; the labeled subset and the
    data-dependent-init batch are chosen exactly as the official code does (seed_data).
  * Random numbers (weights, noise, z) come from JAX's PRNG instead of Theano's MRG streams.
"""

from itgan_jax.config_args import parse_arg, run_sections
import ml_collections
from ml_collections import config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, labels=100, demo=False, tiny=False, prerelease=False)
  c = ml_collections.ConfigDict()
  c.variant = "ssl"
  c.seed = 1                      # official --seed (weights, noise, data order)
  c.num_devices = config_dict.placeholder(int)  # None: all devices

  c.data = ml_collections.ConfigDict()
  c.data.name = "mnist"
  c.data.source = "auto"          # 'auto' | 'files' | 'tfds'
  c.data.dir = config_dict.placeholder(str)            # original idx .gz files (or $ITGAN_DATA_DIR)
  c.data.tfds_data_dir = config_dict.placeholder(str)  # prepared tfds ArrayRecord copy
  c.data.allow_download = False
  c.data.num_labeled = args.labels  # total, class-balanced (official --count is per class)
  c.data.seed_data = 1            # official --seed_data: labeled-subset permutation
  c.data.init_size = 500          # data-dependent init batch (official trainx[:500])
  c.data.scale = "unit"           # x / 255 (G output is a sigmoid)
  c.data.feeder = "auto"          # 'device' (data on the devices), 'host' (each process gathers
                                  # its rows), 'auto': device on one process, host on several

  c.model = ml_collections.ConfigDict()
  c.model.name = "mnist_mlp"
  c.model.g_norm = "batch"
  c.model.d_input_noise = 0.3
  c.model.d_hidden_noise = 0.5
  c.model.d_dropout = 0.0         # input dropout (conv family; the MLP D uses noise only)
  c.model.minibatch_kernels = 0   # minibatch discrimination B (0 = off; mnist_md*.py)
  c.model.minibatch_dim = 5       # minibatch discrimination C
  c.model.z_dim = 100
  c.model.z_dist = "uniform01"    # official quirk: theano_rng.uniform default U(0, 1)

  c.loss = ml_collections.ConfigDict()
  c.loss.generator = "feature_matching"
  c.loss.fm_distance = "l2"       # MNIST script: mean of squared differences of batch means
  c.loss.fm_layer = -1            # last hidden layer (official layers[-3], third 250-unit layer)
  c.loss.unlabeled_weight = 1.0
  c.loss.label_smoothing = 1.0    # real target; 1.0 = no smoothing (not used by this script)
  c.loss.kl_target = 0.375        # generator target of loss.generator='kl_target' (imagenet code)

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 0.003
  c.optim.schedule = "constant"
  c.optim.schedule_kwargs = ml_collections.ConfigDict()
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.eps_inside_sqrt = True  # official nn.adam_updates: m_hat / sqrt(v_hat + 1e-8)
  c.optim.ema_rate = 1e-4         # Polyak test parameters a <- a + 1e-4 (p - a)
  c.optim.ema_zero_init = True    # official: initialised at zero, no bias correction
  c.optim.ema_debias = False      # True: evaluate ema / (1 - (1 - rate)^step) (not official)
  c.optim.historical_averaging_d = 0.0
  c.optim.historical_averaging_g = 0.0
  c.optim.historical_averaging_include_current = False  # paper's mean incl. theta_t (see optim/)

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 100
  c.train.num_epochs = 300
  c.train.steps_per_epoch = config_dict.placeholder(int)  # None: 60000 // 100 = 600
  c.train.steps_per_call = 100    # iterations per jitted lax.scan call (checkpoint granularity)
  c.train.g_steps_per_d_step = 1
  c.train.num_seeds = 1           # N > 1: seeds seed..seed+N-1 (and seed_data..+N-1) trained as
                                  # one vmapped program (train/seed_vmap.py, experiments/table.py)
  c.train.xla_cpu_region_copy_analysis = True  # CPU only: fewer carry copies (train/loop.py)

  # Evaluators (itgan_jax/evaluators), run in this order after every `every_epochs` epochs and
  # after the last one.
  c.evals = ml_collections.ConfigDict()
  c.evals.test_error = ml_collections.ConfigDict(dict(
      kind="classifier_error", every_epochs=1,
      batch_size=1000,            # test batches (D is batch-independent here)
      max_examples=config_dict.placeholder(int)))  # None: the whole test set (official)
  c.evals.samples = ml_collections.ConfigDict(dict(
      kind="sample_grid", every_epochs=1, num_samples=100))  # <workdir>/samples/epoch_NNNN.png
  # Image metrics of the generator (docs/metrics.md), e.g.
  # --config.evals.metrics.metrics="('mnist_score','classifier_fd','swd')"; () = none.
  c.evals.metrics = ml_collections.ConfigDict(dict(
      kind="image_metrics", every_epochs=10, metrics=(), num_samples=10000,
      reference="train",          # real images for FD / SWD / KID: the training set (or "test")
      num_reference=config_dict.placeholder(int)))  # None: as many as samples

  # precision (float32 products), log, checkpoint: config_args.run_sections()
  c.update(run_sections())

  if args.prerelease:  # the official script before 0fa06b5 (see the module docstring)
    c.optim.lr = 0.001
    c.optim.schedule = "linear_decay"  # lr * min((300 - epoch) / 100, 1), epoch counted from 0
    c.optim.schedule_kwargs = ml_collections.ConfigDict(dict(start_epoch=200, end_epoch=300))
  if args.demo:   # `make demo`: about 4-5 minutes of training on 2 quiet CPU cores
    c.train.num_epochs = 8
  if args.tiny:   # tests and the notebook smoke run: seconds
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 4
    c.train.steps_per_call = 2
    c.evals.test_error.batch_size = 2000
  return c
