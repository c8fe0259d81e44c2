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

.PHONY: run test chromium zoo metrics phases embeddings downstream bench screenshots clean-venv

$(STAMP): requirements.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

run: $(STAMP)
	$(PYTHON) -m streamlit run dashboard/app.py --server.headless true --server.port $(PORT)

test: $(STAMP) chromium
	$(PYTHON) -m pytest -q

# Debian's Chromium for the browser tests and screenshots (Playwright cannot download its own here).
chromium:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium (browser tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: the browser tests will be skipped"; }

# Regenerate the committed default zoo (resumable: rerun after an interruption).
zoo: $(STAMP)
	$(PYTHON) -m data.generate data/specs/mnist1d-mlp.toml --out data/zoos/mnist1d-mlp

# The landscape metrics over the default zoo's analysis epochs (resumable; `make downstream` adds the rest).
metrics: $(STAMP)
	$(PYTHON) -m analysis.run data/zoos/mnist1d-mlp --metrics 'performance,weights,hessian*,cka_*,mc_*'

# Phase labels of the default zoo at its analysis epochs (writes data/zoos/mnist1d-mlp/phases.parquet).
phases: $(STAMP)
	$(PYTHON) -m analysis.phases --zoo data/zoos/mnist1d-mlp

# PCA and UMAP of the default zoo's weights at every stored epoch (writes embeddings.parquet).
embeddings: $(STAMP)
	$(PYTHON) -m analysis.embed data/zoos/mnist1d-mlp

# The downstream studies at the last analysis epoch (resumable), phase ensembles, and the findings re-tested.
downstream: $(STAMP)
	$(PYTHON) -m analysis.run data/zoos/mnist1d-mlp --metrics 'ensemble,average_*,transfer,prune' --epochs 300
	$(PYTHON) -m analysis.phase_ensembles data/zoos/mnist1d-mlp
	$(PYTHON) -m analysis.findings data/zoos/mnist1d-mlp

bench: $(STAMP)
	$(PYTHON) bench/bench_generate.py
	$(PYTHON) bench/bench_hessian.py
	$(PYTHON) bench/bench_dashboard.py
	$(PYTHON) bench/bench_upload.py

screenshots: $(STAMP) chromium
	$(PYTHON) docs/screenshots.py

clean-venv:
	rm -rf $(VENV)
