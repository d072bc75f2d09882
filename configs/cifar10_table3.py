"""The CIFAR-10 Inception-score ablation of Salimans et al. 2016, Table 3 (papers.md E.2), one column each.

  --config=configs/cifar10_table3.py:column=our_methods   (default)
  our_methods  "Our methods": minibatch discrimination + VBN generator + one-sided label smoothing
               (alpha 0.75, the imagenet code's value) + labels (the K+1 semi-supervised D, 4000
               labels); no feature matching, no historical averaging. IS 8.09 +/- .07
  no_vbn       "-VBN+BN": batch norm in G instead of VBN.                                  7.54 +/- .07
  no_l_ha      "-L+HA": no labels (the unsupervised `gan` variant, one real/fake logit) plus
               historical averaging on both players (lambda 1.0, our choice: no official value). 6.86 +/- .06
  no_ls        "-LS": no label smoothing.                                                 6.83 +/- .06
  no_l         "-L": no labels, no historical averaging.                                  4.36 +/- .04
  no_mbf       "-MBF": no minibatch features.                                             3.87 +/- .03
Each column differs from `our_methods` only in the switch it names (tests/test_configs_cifar.py
asserts it); the rest is the released `train_cifar_minibatch_discrimination.py` (configs/cifar10_ssl.py:md:
Gaussian input noise 0.2, minibatch layer 100 x 5, the saturating minimax G loss, 3 G steps per D
step, Adam 3e-4 flat to epoch 800 then linear to 0 at 1200). Real data: IS 11.24 +/- .12.

The paper's scores are Inception scores of 50,000 samples (the official TF Inception graph, whose
weights cannot be downloaded here; docs/metrics.md says how to supply them):
  python -m itgan_jax.main --config=configs/cifar10_table3.py:column=no_ls --workdir=runs/t3_no_ls \
      --config.evals.metrics.metrics="('is',)" --config.evals.metrics.num_samples=50000 \
      --config.evals.metrics.inception_weights=/path/to/inception_weights.npz
Without the weights the runs track the download-free CIFAR-10 classifier score and FD.
Deliberate choices (no released code exists for this table, papers.md A.5 item 8): the G loss stays
the MD script's minimax loss in every column (the imagenet code paired smoothing with a KL
generator target 0.375: --config.loss.generator=kl_target); the HA weight; 4000 labels.
Cost: the MD iteration of configs/cifar10_ssl.py:md (docs/compute.md). Smoke: add `,tiny`.
"""

import pathlib

import ml_collections

from itgan_jax.config_args import load_config_file, parse_arg

COLUMNS = ("our_methods", "no_vbn", "no_l_ha", "no_ls", "no_l", "no_mbf")
PAPER_IS = {"real_data": (11.24, 0.12), "our_methods": (8.09, 0.07), "no_vbn": (7.54, 0.07),
            "no_l_ha": (6.86, 0.06), "no_ls": (6.83, 0.06), "no_l": (4.36, 0.04),
            "no_mbf": (3.87, 0.03)}
HISTORICAL_AVERAGING_WEIGHT = 1.0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, column="our_methods", labels=4000, small=False, tiny=False)
  if args.column not in COLUMNS:
    raise ValueError(f"configs/cifar10_table3.py:column={args.column!r}; choose one of {COLUMNS}")
  preset = ",".join([f"labels={args.labels}", "md"] + [k for k in ("small", "tiny") if args[k]])
  c = load_config_file(f"{pathlib.Path(__file__).with_name('cifar10_ssl.py')}:{preset}")
  # "Our methods": the MD script plus VBN in G and one-sided label smoothing.
  c.model.g_norm = "vbn"
  c.loss.label_smoothing = 0.75
  c.evals.metrics.every_epochs = 10
  # The ablations: one switch each.
  if args.column == "no_vbn":
    c.model.g_norm = "batch"
  if args.column in ("no_l", "no_l_ha"):
    c.variant = "gan"              # one real/fake logit, every image unlabeled
    del c.evals["test_error"]      # a test error needs the class logits
  if args.column == "no_l_ha":
    c.optim.historical_averaging_d = HISTORICAL_AVERAGING_WEIGHT
    c.optim.historical_averaging_g = HISTORICAL_AVERAGING_WEIGHT
  if args.column == "no_ls":
    c.loss.label_smoothing = 1.0
  if args.column == "no_mbf":
    c.model.minibatch_kernels = 0
  return c
