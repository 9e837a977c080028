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

# `mas setup` builds the CPU kernels (Linux) now rather than on their first use
setup: $(BIN)/python blas
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[weights,plots]"
	$(BIN)/mas setup || true

setup-test: setup
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[test]"
	sh tools/install_refs.sh $(BIN)/pip

demo: setup
	$(BIN)/mas weights get whisper-tiny.en silero-vad voice-encoder
	$(BIN)/mas pipeline --demo

# then the parity and end-to-end tests again on the plain MLX path, the code a Mac runs
# (MAS_GEMV=off; conftest.py fails a test there if any CPU-only path ran during it)
PLAIN_MLX_TESTS = $(sort $(wildcard tests/test_*_parity.py tests/test_*_e2e.py)) tests/test_plain_path.py

test: setup-test
	$(BIN)/python -m pytest -q -rs
	MAS_GEMV=off $(BIN)/python -m pytest -q -rs $(PLAIN_MLX_TESTS)

# the test extra pins ruff (its formatter changes between releases)
lint: setup
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[test]"
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
