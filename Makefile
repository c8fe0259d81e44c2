# PhaseZoo. Two commands do all set-up on a fresh machine:
#   make run    create .venv if missing, install requirements.txt, serve the dashboard on the default zoo
#   make test   the same set-up, then the whole test suite
PY      ?= python3
VENV    := .venv
PYTHON  := $(VENV)/bin/python
PORT    ?= 8501
STAMP   := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)
# Small-model autograd on 2 cores is many times slower with oversubscribed threads.
export OMP_NUM_THREADS ?= 1

.PHONY: run test chromium zoo zoos metrics phases embeddings downstream bench screenshots clean-venv

$(STAMP): requirements.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

# MALLOC_ARENA_MAX=2: Streamlit runs each script run in a new thread, and glibc's per-thread arenas kept
# the freed memory of every run (docs/serving.md).
run: $(STAMP)
	MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(PYTHON) -m streamlit run dashboard/app.py --server.headless true --server.port $(PORT)

test: $(STAMP) chromium
	$(PYTHON) -m pytest -q

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
	$(PYTHON) -m data.generate data/specs/$(ZOO).toml --out data/zoos/$(ZOO)

# The landscape metrics over a zoo's analysis epochs (resumable; `make downstream` adds the rest).
# Metrics that do not apply to a zoo's task kind or architecture are skipped.
metrics: $(STAMP)
	$(PYTHON) -m analysis.run data/zoos/$(ZOO) --metrics '$(LANDSCAPE)'

# Phase labels at the analysis epochs (writes data/zoos/$(ZOO)/phases.parquet).
phases: $(STAMP)
	$(PYTHON) -m analysis.phases --zoo data/zoos/$(ZOO)

# PCA and UMAP of the weights at every stored epoch (writes embeddings.parquet).
embeddings: $(STAMP)
	$(PYTHON) -m analysis.embed data/zoos/$(ZOO)

# The downstream studies at the last analysis epoch (resumable), phase ensembles, and the findings re-tested
# (classification and sequence zoos; a regression zoo has no class probabilities to ensemble).
downstream: $(STAMP)
	$(PYTHON) -m analysis.run data/zoos/$(ZOO) --metrics 'ensemble,average_*,transfer,prune' --epochs last
	$(PYTHON) -m analysis.phase_ensembles data/zoos/$(ZOO)
	$(PYTHON) -m analysis.findings data/zoos/$(ZOO)

# Every committed zoo from scratch-or-resume: train, landscape metrics, phases, embeddings, downstream.
# A metric that fails on some model is stored as an error row and reported (exit status 1), not fatal here:
# e.g. CKA is undefined for the narrowest CNNs, whose dead ReLUs give constant outputs.
zoos: $(STAMP)
	for z in $(ZOOS); do $(MAKE) zoo ZOO=$$z || exit 1; $(MAKE) metrics ZOO=$$z || echo "$$z: see the error rows"; \
	  $(MAKE) phases embeddings ZOO=$$z || exit 1; \
	  case $$z in convection-*) ;; *) $(MAKE) downstream ZOO=$$z || echo "$$z: see the error rows";; esac; done

bench: $(STAMP)
	$(PYTHON) bench/bench_generate.py
	$(PYTHON) bench/bench_hessian.py
	$(PYTHON) bench/bench_dashboard.py
	$(PYTHON) bench/bench_upload.py
	$(PYTHON) bench/bench_ray.py
	$(PYTHON) bench/bench_load.py
	$(PYTHON) bench/trace_coverage.py

screenshots: $(STAMP) chromium
	$(PYTHON) docs/screenshots.py

clean-venv:
	rm -rf $(VENV)
