#!/usr/bin/env bash
# Prepares what `experiments/device/h200_session.sh` carries to a lent GPU machine (run HERE, where
# pip reaches PyPI; neither folder is committed: both are listed in .git/info/exclude):
#   .whl/          the pure-Python wheels that machine's image lacks (its image has jax, flax,
#                  optax, orbax, chex, absl, scipy, pillow, tqdm: device/KINDS.md)
#   .device_data/  the MNIST idx files (../shared/data does not travel; CIFAR-10's 163 MB tarball
#                  is over the 64 MiB a call carries, so the CIFAR benchmark uses synthetic data)
#
#   bash experiments/device/prepare.sh [DATA_DIR]     # DATA_DIR defaults to ../shared/data
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA_DIR=${1:-../shared/data}
for path in /.whl/ /.device_data/; do
  grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude
done
rm -rf .whl && mkdir -p .whl .device_data/mnist
# Same versions as this checkout's venv where it has them; --no-deps: their needs (absl, PyYAML,
# numpy, packaging, protobuf) are in the image.
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --platform any -d .whl \
    ml_collections==1.1.0 tensorboardX==2.6.5
if [ ! -f "$DATA_DIR/mnist/train-images-idx3-ubyte.gz" ]; then
  echo "no MNIST idx files under $DATA_DIR/mnist: pass the data directory as the first argument" >&2
  exit 1
fi
cp "$DATA_DIR"/mnist/*-ubyte.gz .device_data/mnist/
du -sh .whl .device_data
echo "ready: carry [\".whl\", \".device_data\"] (see experiments/device/h200_session.sh)"
