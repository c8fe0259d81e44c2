# PhaseZoo. Two commands do all set-up on a fresh machine:
#   make run    create .venv if missing, install requirements.txt and the project (the `phasezoo` command),
#               serve the dashboard on the default zoo
#   make test   the same set-up, then the linter and the whole test suite (`make test-fast`: under a minute)
PY      ?= python3
VENV    := .venv
PYTHON  := $(VENV)/bin/python
PHASEZOO := $(VENV)/bin/phasezoo
PORT    ?= 8501
STAMP   := $(VENV)/.installed
# Small-model autograd on 2 cores is many times slower with oversubscribed threads.
export OMP_NUM_THREADS ?= 1

.PHONY: run test test-fast lint reference chromium zoo zoos metrics phases embeddings downstream bench bench-quick screenshots \
	clean-venv

# The project is installed editable (pyproject.toml): `import analysis` works from anywhere and .venv/bin/phasezoo
# exists. --no-build-isolation: built with the venv's own setuptools (requirements.txt), no download.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# `phasezoo dashboard` sets MALLOC_ARENA_MAX=2 unless it is set (docs/serving.md).
run: $(STAMP)
	$(PHASEZOO) dashboard --port $(PORT)

test: $(STAMP) lint chromium
	$(PYTHON) -m pytest -q

# The part a contributor runs after each change: no test marked slow (≳ 1 s) or browser (pyproject.toml).
test-fast: $(STAMP)
	$(PYTHON) -m pytest -q -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# docs/cli.md: every command's --help and the metric table, from the code (tests/test_cli.py checks it).
reference: $(STAMP)
	$(PHASEZOO) reference --write

# Debian's Chromium for the browser tests and screenshots (Playwright cannot download its own here).
chromium:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium (browser tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: the browser tests will be skipped"; }

# The committed zoos, each generated from data/specs/<name>.toml by the same generator into data/zoos/<name>.
# Every target below takes ZOO=<name> (default: the default zoo); `make zoos` regenerates all of them.
ZOO  ?= mnist1d-mlp
ZOOS := mnist1d-mlp mnist1d-cnn convection-pinn modadd-transformer
LANDSCAPE ?= performance,weights,hessian*,cka_*,mc_*,grokking

# Train a zoo (resumable: rerun after an interruption).
zoo: $(STAMP)
	$(PHASEZOO) generate data/specs/$(ZOO).toml --out data/zoos/$(ZOO)

# The landscape metrics over a zoo's analysis epochs (resumable; `make downstream` adds the rest).
# Metrics that do not apply to a zoo's task kind or architecture are skipped.
metrics: $(STAMP)
	$(PHASEZOO) run data/zoos/$(ZOO) --metrics '$(LANDSCAPE)'

# Phase labels at the analysis epochs (writes data/zoos/$(ZOO)/phases.parquet).
phases: $(STAMP)
	$(PHASEZOO) phases --zoo data/zoos/$(ZOO)

# PCA and UMAP of the weights at every stored epoch (writes embeddings.parquet).
embeddings: $(STAMP)
	$(PHASEZOO) embed data/zoos/$(ZOO)

# The downstream studies at the last analysis epoch (resumable), phase ensembles, and the findings re-tested
# (classification and sequence zoos; a regression zoo has no class probabilities to ensemble).
downstream: $(STAMP)
	$(PHASEZOO) downstream data/zoos/$(ZOO)

# Every committed zoo from scratch-or-resume: train, landscape metrics, phases, embeddings, downstream.
# A metric that fails on some model is stored as an error row and reported (exit status 1), not fatal here:
# e.g. CKA is undefined for the narrowest CNNs, whose dead ReLUs give constant outputs.
zoos: $(STAMP)
	for z in $(ZOOS); do $(MAKE) zoo ZOO=$$z || exit 1; $(MAKE) metrics ZOO=$$z || echo "$$z: see the error rows"; \
	  $(MAKE) phases embeddings ZOO=$$z || exit 1; \
	  case $$z in convection-*) ;; *) $(MAKE) downstream ZOO=$$z || echo "$$z: see the error rows";; esac; done

# Every bench in its full mode, one after another (bench_dashboard drives Chromium); `make bench-quick`: each
# one's quick mode, as the test suite runs them (tests/test_benches.py). docs/benchmarks.md has the results.
bench: $(STAMP) chromium
	$(PYTHON) bench/bench_generate.py
	$(PYTHON) bench/bench_hessian.py
	$(PYTHON) bench/bench_dashboard.py
	$(PYTHON) bench/bench_upload.py
	$(PYTHON) bench/bench_ray.py
	$(PYTHON) bench/bench_load.py
	$(PYTHON) bench/trace_coverage.py
	$(PYTHON) bench/bench_archs.py

bench-quick: $(STAMP) chromium
	$(PYTHON) -m pytest -q tests/test_benches.py

screenshots: $(STAMP) chromium
	$(PYTHON) docs/screenshots.py

clean-venv:
	rm -rf $(VENV)
