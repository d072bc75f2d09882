"""Prepare a TensorFlow-Datasets ArrayRecord copy of mnist / cifar10 / svhn (optional source).

Training never needs this: the original files are read directly (datasets.py). A tfds copy is an
alternative for users who already keep datasets in tfds form. Reading it needs no TensorFlow
(`tfds.data_source(..., download=False)`, Pillow decodes the images), but *preparing* it does
(tfds 4.9.10 extracts and encodes with tf.io / tf.image), so run this once in an environment with
TensorFlow:

  pip install tensorflow-cpu tensorflow-datasets importlib_resources pillow
  python -m itgan_jax.data.tfds_prep --name=mnist --tfds_data_dir=~/tfds --raw_dir=~/raw

then train with `--config.data.tfds_data_dir=~/tfds` (data.source 'auto' picks it up, 'tfds' forces
it). What it does (the `tfds build` CLI of 4.9.10 crashes without apache_beam, so the Python API):

  builder = tfds.builder(name, data_dir=tfds_data_dir, file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=raw_dir))

Offline preparation: put the files tfds registers for the dataset into `raw_dir` under their
original names; tfds uses them instead of downloading, after checking their size and sha256:
  mnist:   train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
           t10k-labels-idx1-ubyte.gz (the same files as data.dir uses);
  cifar10: cifar-10-binary.tar.gz (the *binary* version, not the python pickles used by data.dir;
           the rebuilt shared cifar-10-python copy cannot be used);
  svhn:    train_32x32.mat, test_32x32.mat and extra_32x32.mat (tfds name `svhn_cropped`; its
           builder registers and prepares the 1.3 GB `extra` split too, which training never reads).
Without `raw_dir` tfds downloads them (needs internet; offline it retries for minutes).

Result: `<tfds_data_dir>/<tfds name>/<version>/{dataset_info.json, features.json,
<tfds name>-{train,test}.array_record-000NN-of-000MM}`. tfds stores the examples in a hashed order;
`datasets.load_tfds` restores the original order (needed for the official labeled subset) and
checks it against the original content fingerprints.
"""

from __future__ import annotations

import argparse
import pathlib

TFDS_NAMES = {"mnist": "mnist", "cifar10": "cifar10", "svhn": "svhn_cropped"}


def prepare(name: str, tfds_data_dir: str, raw_dir: str | None = None) -> pathlib.Path:
  """Builds the ArrayRecord copy of `name` in `tfds_data_dir`; returns the version directory."""
  if name not in TFDS_NAMES:
    raise ValueError(f"name={name!r} is not one of {sorted(TFDS_NAMES)}")
  try:
    import tensorflow  # noqa: F401  (tfds needs it to prepare, not to read)
  except ImportError as e:
    raise RuntimeError("preparing a tfds copy needs TensorFlow (pip install tensorflow-cpu); "
                       "reading it later does not") from e
  import tensorflow_datasets as tfds
  tfds_data_dir = str(pathlib.Path(tfds_data_dir).expanduser())
  builder = tfds.builder(TFDS_NAMES[name], data_dir=tfds_data_dir, file_format="array_record")
  config = (tfds.download.DownloadConfig(manual_dir=str(pathlib.Path(raw_dir).expanduser()))
            if raw_dir else None)
  builder.download_and_prepare(download_config=config)
  return pathlib.Path(builder.data_dir)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--name", required=True, choices=sorted(TFDS_NAMES))
  parser.add_argument("--tfds_data_dir", required=True, help="where the prepared copy is written")
  parser.add_argument("--raw_dir", default=None,
                      help="directory with the original files (offline; else tfds downloads)")
  args = parser.parse_args(argv)
  print(f"prepared {args.name} in {prepare(args.name, args.tfds_data_dir, args.raw_dir)}")


if __name__ == "__main__":
  main()
