# All set-up from a fresh machine with Python 3.11, make and the package registries.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: install test demo lint clean

# Real data for the zoo (and so for tests and the demo): Debian's Fashion-MNIST package.
$(FMNIST):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed $(FMNIST)
	$(PY) -m pytest -q

demo: $(VENV)/.installed $(FMNIST)
	$(VENV)/bin/progenitor demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) build dist .pytest_cache
