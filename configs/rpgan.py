"""The official RP-GAN experiments (ayanc/rpgan `exp/*.py`; papers.md C.1), `variant='rpgan'`.

Presets (the official experiment names; default face48, "the main face model"):
  face1    CelebA 64x64, the single-discriminator baseline (`baseline_train.py`: one D on the full
           RGB image, `disc0.py`, df 64): model.num_projections=0
  face12 / face24 / face48   CelebA 64x64, K = 12 / 24 / 48 discriminators, each on one 8x8
           stride-2 unit-norm Gaussian projection 64x64x3 -> 32x32x1, df 128
  dog12    "Imagenet-Canines" 128x128, K = 12 (128x128x3 -> 64x64x1), z 200, G f1 2048, df 64
All: z ~ U(-1, 1), G f1 1024 (face), batch 64, Adam(2e-4, beta1 0.5) for G and for every D_k,
1e5 iterations (100 logged "epochs" of 1,000 iterations = the official snapshot interval), images
in [-1, 1]. The projections are drawn from `config.seed` (`np.random.RandomState(seed)`, the
algorithm of `filts/rproj.py`); to train with the official banks pass
`--config.model.projection_file=filts/K48_dm12.npz` (from the ayanc/rpgan repository).

Data (supplied by you; nothing is downloaded): an image folder `DIR/<any>/<images>`
(`data/image_folder.py`; one sub-directory is enough, e.g. DIR/faces/*.jpg):
  * faces: the official list `data/faces.txt` holds pre-cropped CelebA faces read without resizing
    (`crop=False`); give such 64x64 crops, or any images: they are centre-cropped to a square and
    resized to 64x64 (bilinear);
  * dogs: the Imagenet-Canines images (the dog classes of ILSVRC2012); each time an image is used,
    its short side is resized to 129 and a random 128x128 window cropped (official `crop=True`;
    `data.crop='random'`, the window drawn from the epoch plan so a resumed run sees the same).

Run (GPU/TPU scale: face48 is 48 discriminators of 128-256-512-1024 channels on 32x32 inputs,
about 4.3 TFLOP per iteration, so the 1e5 iterations take an estimated 3-6 h on one H100 at
30-60 % of float32 peak; RESULTS.md "RP-GAN step"):
  python -m itgan_jax.main --config=configs/rpgan.py:face48 --workdir=runs/face48 \\
      --config.data.dir=/data/celeba_cropped
  python -m itgan_jax.main --config=configs/rpgan.py:face1 --workdir=runs/face1 --config.data.dir=...
  python -m itgan_jax.main --config=configs/rpgan.py:dog12 --workdir=runs/dog12 --config.data.dir=...
Expected result: no numeric anchor exists (papers.md C.5, next_features.md 1.1); the paper's claim
is qualitative: the K-projection models keep improving where the single-D face1 baseline degrades
later in training (the official README samples face1 at iteration 40,000). Compare the sample
grids (`<workdir>/samples/`) of face1 and face48 over the 100 epochs.
CPU-sized (narrow networks, 100-iteration epochs): add `,small` (e.g. `:face12,small`); smoke
(seconds, tests): `,tiny`. `model.k_strategy` selects how the K discriminators are evaluated
(docs/rpgan.md).
"""

import ml_collections
from ml_collections import config_dict

from itgan_jax.config_args import parse_arg, run_sections

EXPERIMENTS = ("face1", "face12", "face24", "face48", "dog12")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, small=False, **{e: False for e in EXPERIMENTS})
  chosen = [e for e in EXPERIMENTS if args[e]]
  if len(chosen) > 1:
    raise ValueError(f"choose one experiment of {EXPERIMENTS}, got {chosen}")
  exp = chosen[0] if chosen else "face48"
  dog = exp == "dog12"

  c = ml_collections.ConfigDict()
  c.variant = "rpgan"
  c.seed = 1
  c.num_devices = config_dict.placeholder(int)  # None: all devices

  c.data = ml_collections.ConfigDict()
  c.data.name = "image_folder"
  c.data.dir = config_dict.placeholder(str)      # DIR/<sub-directory>/<images>
  c.data.allow_download = False
  c.data.image_size = 128 if dog else 64
  c.data.crop = "random" if dog else "center"   # random: official real.py crop=True (dogs)
  c.data.init_size = 64            # decoded once for the init pass (shapes only)
  c.data.scale = "tanh"            # official x * 2 / 255 - 1
  c.data.num_workers = 8           # decoding threads per process
  c.data.prefetch = True

  c.model = ml_collections.ConfigDict()
  c.model.name = "rpgan"
  c.model.z_dim = 200 if dog else 100
  c.model.z_dist = "uniform_pm1"
  c.model.g_features = 2048 if dog else 1024   # official f1
  c.model.d_features = 128 if exp in ("face12", "face24", "face48") else 64  # official df
  c.model.num_projections = {"face1": 0, "face12": 12, "face24": 24, "face48": 48,
                             "dog12": 12}[exp]   # K; 0 = one D on the full image
  c.model.projection_size = 8
  c.model.projection_stride = 2
  c.model.projection_seed = config_dict.placeholder(int)   # None: config.seed
  c.model.projection_file = config_dict.placeholder(str)   # official filts/K<n>_dm12.npz
  c.model.k_strategy = "auto"      # 'vmap' | 'map' | 'shard' | 'auto' (docs/rpgan.md)
  c.model.k_map_batch_size = 4     # discriminators per lax.map iteration ('map')

  c.loss = ml_collections.ConfigDict()
  c.loss.generator = "non_saturating"   # official; 'minimax' | 'kl_target'
  c.loss.label_smoothing = 1.0          # real target of every D_k (1.0 = none, official)
  c.loss.kl_target = 0.375

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 2e-4
  c.optim.schedule = "constant"
  c.optim.schedule_kwargs = ml_collections.ConfigDict()
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.eps_inside_sqrt = False   # TF AdamOptimizer
  c.optim.g_ema_rate = 0.0          # EMA of G for samples (0 = off, official)
  c.optim.historical_averaging_d = 0.0
  c.optim.historical_averaging_g = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64
  c.train.num_epochs = 100          # x 1,000 = the official MAXITER 1e5
  c.train.steps_per_epoch = 1000    # the official SAVEFREQ
  c.train.steps_per_call = 50
  c.train.xla_cpu_region_copy_analysis = True

  c.evals = ml_collections.ConfigDict()
  c.evals.samples = ml_collections.ConfigDict(dict(
      kind="sample_grid", every_epochs=1, num_samples=100))

  # precision (float32 products), log, checkpoint: config_args.run_sections()
  c.update(run_sections())
  c.log.per_discriminator_max = 48  # log loss_d_kNN / loss_gen_kNN when K <= this

  if args.small:  # CPU-sized: narrow networks, 100-iteration epochs
    c.model.g_features = 128
    c.model.d_features = 16 if c.model.num_projections else 8
    c.train.steps_per_epoch = 100
    c.train.steps_per_call = 10
    c.data.num_workers = 2
  if args.tiny:   # tests: a few steps on a small image folder
    c.data.image_size = 32 if not dog else 64
    c.data.init_size = 4
    c.data.num_workers = 2
    c.model.z_dim = 16
    c.model.g_features = 16
    c.model.d_features = 4
    c.model.num_projections = min(c.model.num_projections, 3)
    c.train.batch_size = 4
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 2
    c.train.steps_per_call = 1
    c.evals.samples.num_samples = 4
  return c
