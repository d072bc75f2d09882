"""CIFAR-10 minibatch discrimination without labels (`variant='gan'`): the released MD script's "-L".

The released `train_cifar_minibatch_discrimination.py` setup (papers.md A.3) without the labeled
part of D's loss: D = the official conv D with Gaussian input noise 0.2 instead of input dropout
and `MinibatchLayer(100 kernels x 5)` between the global pool and a 1-unit output; G = the
official BN conv G; G loss = the saturating minimax log(1 - D(G(z))) with 3 G steps per D step;
Adam 3e-4 (beta1 0.5) flat to epoch 800, linear to 0 at 1200; batch 100, 500 iterations per epoch.
Paper (Table 3, 50k samples): IS 4.36 +/- .04 for "-L"; "-L+HA" (historical averaging added)
6.86 +/- .06 (papers.md E.2). That table's columns ablate "Our methods", which also has VBN and
label smoothing: configs/cifar10_table3.py:column=no_l is the paper's "-L" column.

  python -m itgan_jax.main --config=configs/cifar10_md_gan.py --workdir=runs/cifar10_md_gan
CPU-sized: --config=configs/cifar10_md_gan.py:small; smoke: --config=configs/cifar10_md_gan.py:tiny
"""

import pathlib

import ml_collections

from itgan_jax.config_args import load_config_file, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, small=False)
  preset = ",".join(k for k in ("tiny", "small") if args[k])
  c = load_config_file(str(pathlib.Path(__file__).with_name("cifar10_gan.py"))
                       + (f":{preset}" if preset else ""))
  c.model.d_input_noise = 0.2       # MD scripts: Gaussian input noise ...
  c.model.d_dropout = 0.0           # ... instead of the FM scripts' input dropout
  c.model.minibatch_kernels = 100   # official MinibatchLayer B x C
  c.model.minibatch_dim = 5
  c.loss.generator = "minimax"      # G minimises log(1 - D(G(z)))
  c.train.g_steps_per_d_step = 3
  if args.tiny:
    c.model.minibatch_kernels = 8
  return c
