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
