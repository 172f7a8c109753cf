# Two commands do everything on a fresh machine (Python 3.11 and the package registries):
#   make run   - set up .venv and run the whole pipeline (dvc repro) on the default simulated data
#   make test  - set up .venv and run the test suite (pytest-xdist: whole files on one worker per
#                core, the files with the most end-to-end tests first; docs/performance.md)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Vega, Vega-Lite and vega-embed from the npm registry, inlined into the page template of
# `dvc plots show` (.dvc/config: plots.html_template), so that the charts draw offline.
PLOTS_JS := $(VENV)/share/riskml/vega
PLOTS_TEMPLATE := $(VENV)/share/riskml/dvc-plots.html
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: run test install lint bench clean-outputs

install: $(STAMP)

$(STAMP): pyproject.toml scripts/offline_plots/package-lock.json scripts/offline_plots/make_template.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	mkdir -p $(PLOTS_JS)
	cp scripts/offline_plots/package.json scripts/offline_plots/package-lock.json $(PLOTS_JS)/
	npm ci --prefix $(PLOTS_JS) --omit=dev --no-audit --no-fund --loglevel=error
	$(BIN)/python scripts/offline_plots/make_template.py $(PLOTS_JS)/node_modules $(PLOTS_TEMPLATE)
	touch $(STAMP)

run: $(STAMP)
	dvc repro
	# a cached repro restores metrics/promotion.json but runs no code: bring the registry's
	# aliases in line with it (every command that loads a model does the same first)
	riskml registry sync
	@echo "Done: metrics in metrics/, plots in plots/, candidates in data/candidates/, MLflow store in mlflow.db (mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db)"

test: $(STAMP)
	pytest -n auto --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	ruff check src tests bench scripts

bench: $(STAMP)
	python bench/pipeline_timing.py

clean-outputs:
	rm -rf data/raw data/interim data/features data/scores data/explanations data/candidates models/*/ metrics plots mlflow.db mlartifacts
