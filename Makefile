# coreselect: `make demo` (the main job), `make test` (all tests), `make lint`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test lint data bench-extra clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the local CPU wheel first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's Fashion-MNIST, when apt is here, we are root, and the files are missing.
data:
	@if [ -z "$$CORESELECT_DATA" ] && [ ! -f $(FMNIST) ] && command -v apt-get >/dev/null 2>&1 \
	    && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	  echo "warning: could not install dataset-fashion-mnist"; \
	fi

demo: $(STAMP) data
	$(BIN)/coreselect demo

test: $(STAMP) data
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# anchors for `coreselect bench engine --compare submodlib`
bench-extra: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
