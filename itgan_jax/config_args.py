"""Config-file helpers: parsing `file.py:key=value,key2=value2` arguments (big_vision style)."""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses 'a=1,b=x' (or a bare flag name 'demo' meaning demo=True) against typed defaults.

  Unknown keys and values of the wrong type raise ValueError naming the valid choices.
  """
  out = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; valid: {sorted(defaults)}")
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value, e.g. {key}={default}")
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={value!r} must be true or false")
      out[key] = value.lower() in ("true", "1")
    else:
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ValueError(f"config argument {key}={value!r} must be of type "
                         f"{type(default).__name__}") from None
  return ml_collections.ConfigDict(out)


def run_sections() -> dict[str, ml_collections.ConfigDict]:
  """The config sections every experiment shares, at their defaults (`c.update(run_sections())`).

  precision (docs/precision.md): `matmul` 'highest' = float32 products and convolutions on every
    backend (XLA's 'default' is TF32 on Ampere/Hopper GPUs and one bfloat16 pass on TPU; the
    papers' code ran float32), 'high' | 'default'; `compute_dtype` 'float32' | 'bfloat16' (mixed
    precision: float32 parameters, optimizer state and losses).
  log: `progress` (bar with ETA and running losses), `print_epochs` (one line per epoch when the
    bar is off), `tensorboard`, `curves_every_epochs` (curves.png is redrawn after every N epochs,
    the last one and a stop: matplotlib takes about a second a drawing, a GPU MNIST epoch less).
  checkpoint (docs/run_safety.md): `every_epochs`, `max_to_keep`, `every_steps` (also inside
    epochs, for epochs that take hours; None: off).
  """
  from ml_collections import config_dict  # pylint: disable=import-outside-toplevel
  return {
      "precision": ml_collections.ConfigDict(dict(matmul="highest", compute_dtype="float32")),
      "log": ml_collections.ConfigDict(dict(progress=True, print_epochs=True, tensorboard=True,
                                             curves_every_epochs=10)),
      "checkpoint": ml_collections.ConfigDict(dict(
          every_epochs=1, max_to_keep=2, every_steps=config_dict.placeholder(int))),
  }


def load_config_file(spec: str, **overrides) -> "ml_collections.ConfigDict":
  """Loads 'path/to/config.py[:arg]' like `--config=...` does, then applies dotted overrides.

  Example: load_config_file('configs/mnist_ssl.py:labels=50', **{'train.num_epochs': 10}).
  """
  import importlib.util
  import pathlib

  path, _, arg = spec.partition(":")
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"config file {path} not found")
  module_spec = importlib.util.spec_from_file_location(f"itgan_config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _one_line(error: BaseException) -> str:
  text = str(error.args[0]) if len(error.args) == 1 else str(error)
  text = text.replace("\\n", "\n").replace("\\", "")
  text = " ".join(part.strip() for part in text.splitlines() if part.strip().strip("'"))
  text = text.strip("'")
  return f"{type(error).__name__}: {text}" if not isinstance(error, ValueError) else text


def parse_flags_or_exit(argv: list[str]) -> list[str]:
  """absl flag parsing (for `app.run(main, flags_parser=...)`) whose errors, including a typo'd
  or ill-typed `--config.key=value` override, are one line on stderr and exit status 2 instead
  of a chained traceback; `--help` and valid flags behave as usual."""
  import sys

  from absl import flags

  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
  except (AttributeError, KeyError) as e:  # a --config.key override naming no field
    text = _one_line(e).split(": ", 1)[-1]
    key, _, hint = text.partition(" Did you mean")
    hint = f" Did you mean{hint}" if hint else ""
    print(f"error: a --config override names no config field {key.strip(chr(39))!r}.{hint}",
          file=sys.stderr)
  except Exception as e:  # other override errors (types, values)
    print(f"error: bad flag ({_one_line(e)})", file=sys.stderr)
  sys.exit(2)
