# The README's two commands: `make run` (set up + run the pipeline) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export PREFECT_HOME ?= $(abspath .prefect)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup run flow retrain deploy test test-fast docs dvc-yaml ui clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: setup            ## the whole DAG with DVC (does only what changed), then its tables
	dvc repro
	tinynlp report

flow: setup           ## the same DAG as a Prefect flow
	python -m flows.pipeline

retrain: setup        ## the retraining flow on the files in data/incoming
	python -m flows.retrain

deploy: setup         ## serve the retraining flow on the cron in params.yaml
	python -m flows.deploy

test: setup           ## the whole suite, every tier (what CI runs): unit, whole-DAG on a tiny BERT, browser
	python -m pytest -n auto --dist loadscope -m "not browser"
	python -m pytest -m browser   # alone: beside whole-DAG runs the Prefect UI's API calls time out

test-fast: setup      ## the unit tier only (no whole-DAG, no browser): feedback in under 3 minutes
	python -m pytest -m unit -n auto --dist load

docs: setup           ## the documentation site in site/ (strict: a broken link or page fails)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

dvc-yaml: setup       ## regenerate dvc.yaml from the stage table (tasks/stages.py) and the imports
	python -m tasks.dvc_yaml

ui: setup             ## Prefect UI at http://127.0.0.1:4200
	prefect server start

clean:
	rm -rf checkpoints reports/failed .prefect
