"""Test setup: 8 fake CPU devices so every data-parallel path runs on one CPU."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir():
  """The offline copies of the original datasets (../shared/data), or skip."""
  if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists():
    pytest.skip(f"real data not found at {SHARED_DATA}")
  return SHARED_DATA
