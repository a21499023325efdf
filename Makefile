# Two commands do everything on a fresh machine:
#   make demo   set up, then train a small Chinese BERT on review sentiment and print the report (~20 min on 2 AVX2 cores)
#   make test   set up, then run the test suite
#   make lint   ruff check . (settings in pyproject.toml)
VENV ?= .venv
PYTHON ?= python3
# On a CPU machine elsewhere: make demo TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	# keep a torch that is already in .venv (e.g. your CUDA build); else install $(TORCH)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

demo: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

test: setup
	$(PY) -m pytest -q tests

# ruff is a tool, not a dependency of the recipes: installed on first use (settings in pyproject.toml)
lint: setup
	$(PY) -m ruff --version >/dev/null 2>&1 || $(PY) -m pip install -q "ruff==0.17.6"
	$(PY) -m ruff check .
