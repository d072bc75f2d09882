# Two commands that work on a fresh machine with only Python 3.11+:
#   make demo   -- venv + install + a short MNIST semi-supervised run (100 labels) printing the test error
#   make test   -- venv + install + the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline copy of the original MNIST files if present next to the repo, else a user cache
# (the demo then downloads the original files from their standard mirrors and verifies them).
DATA_DIR ?= $(if $(wildcard ../shared/data/mnist),../shared/data,$(HOME)/.cache/itgan_jax/data)
DEMO_WORKDIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test install benchmark clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m itgan_jax.main --config=configs/mnist_ssl.py:demo --workdir=$(DEMO_WORKDIR) \
	  --config.data.dir=$(DATA_DIR) --config.data.allow_download=True

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --durations=15 $(PYTEST_ARGS)

benchmark: $(VENV)/.installed
	$(PY) benchmarks/mnist_step.py

clean-demo:
	rm -rf $(DEMO_WORKDIR)
