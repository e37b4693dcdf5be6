# Quick start: `make run` (installs, then runs the quick synthetic study), `make test` (installs, then tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of PyTorch by default. GPU users: TORCH_SPEC="torch" make install (pulls the CUDA build),
# or install torch into .venv yourself first; the pinned spec below installs nothing when torch is present.
TORCH_SPEC ?= torch==2.13.*
EXTRAS ?= test,hf,openai

.PHONY: install run test lint bench clean readme-figures readme-sweep

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/conjugate synthetic run --preset quick --out runs/quick

test: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks scripts

# Rewrites the README's results block from finished quick runs: make readme-figures RUNS="runs/quick"
RUNS ?= runs/quick
readme-figures: install
	$(BIN)/python scripts/update_readme.py $(RUNS)

# Rewrites a README sweep block from a finished sweep: make readme-sweep SWEEP=runs/sweep-quick [BLOCK=sweep-quick]
SWEEP ?= runs/sweep-quick
BLOCK ?= sweep-quick
readme-sweep: install
	$(BIN)/python scripts/update_readme.py --sweep $(SWEEP) --block $(BLOCK)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
