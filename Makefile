# Two commands a fresh machine needs (README quickstart):
#   make demo   set up, get the default weights, run the multi-speaker pipeline's demo meeting
#   make test   set up (with the PyTorch reference libraries) and run the tests
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UNAME := $(shell uname -s)

.PHONY: setup setup-test demo test lint blas

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Linux: MLX's CPU wheel needs an optimized BLAS loaded first (DESIGN.md); install Debian's.
blas:
ifeq ($(UNAME),Linux)
	@sh tools/install_blas.sh
endif

setup: $(BIN)/python blas
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[weights]"

setup-test: setup
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[test]"
	sh tools/install_refs.sh $(BIN)/pip

demo: setup
	$(BIN)/mas weights get whisper-tiny.en silero-vad voice-encoder
	$(BIN)/mas pipeline --demo

test: setup-test
	$(BIN)/python -m pytest -q -rs

# the test extra pins ruff (its formatter changes between releases)
lint: setup
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[test]"
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
