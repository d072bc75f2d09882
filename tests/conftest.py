"""Test setup: 8 fake CPU devices so every data-parallel path runs on one CPU, and a persistent
XLA compilation cache shared by the pytest workers and the subprocesses they start.

The cache (`$ITGAN_TEST_XLA_CACHE`, default `<tmp>/itgan_jax_test_xla_cache`; `0` turns it off)
stores compiled programs, not results: a program that several tests (or the processes of the
multi-host tests, or the same run before and after a resume) compile alike is built once. XLA:CPU
spends about 25 s of LLVM work on one step of even the tiny conv GAN.
"""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_cache = os.environ.get("ITGAN_TEST_XLA_CACHE", os.path.join(tempfile.gettempdir(),
                                                              "itgan_jax_test_xla_cache"))
if _cache != "0":
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _cache)

import pathlib  # noqa: E402
import socket  # noqa: E402
import urllib.request  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir():
  """The offline copies of the original datasets (../shared/data), or skip."""
  if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists():
    pytest.skip(f"real data not found at {SHARED_DATA}")
  return SHARED_DATA


@pytest.fixture
def rbg_prng():
  """RBG instead of threefry keys for the test: where its numbers do not depend on the key
  implementation, threefry's compile time on CPU would dominate it."""
  import jax  # pylint: disable=import-outside-toplevel
  previous = jax.config.jax_default_prng_impl
  jax.config.update("jax_default_prng_impl", "unsafe_rbg")
  yield
  jax.config.update("jax_default_prng_impl", previous)


@pytest.fixture
def isolated_data_env(monkeypatch, tmp_path):
  """No ITGAN_DATA_DIR from the caller, and an empty download cache (the data tests opt in with
  `pytestmark = pytest.mark.usefixtures("isolated_data_env")`)."""
  from itgan_jax.data import datasets  # pylint: disable=import-outside-toplevel
  monkeypatch.delenv(datasets.ENV_VAR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))


@pytest.fixture
def no_network(monkeypatch):
  """Fails the test if anything tries to open a URL or a socket connection; returns the list of
  attempts (empty when none was made)."""
  calls = []

  def refuse(*args, **kwargs):
    calls.append(args)
    raise AssertionError(f"network access attempted: {args}")
  monkeypatch.setattr(urllib.request, "urlopen", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)
  monkeypatch.setattr(socket.socket, "connect", refuse)
  return calls
