# Everything comes from the project's own files: a venv with pinned ranges from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test soak stop install lint fmt docs aws-smoke

## Deploy the tutorial's web tier on the embedded default (Temporal dev server + UI, moto, worker).
demo: install
	$(PY) scripts/demo.py up $(ARGS)

## Run the whole test suite (real Temporal dev server, real boto3 calls against a moto server).
test: install
	$(PY) -m pytest -n 3 $(PYTEST_ARGS)

## The large reliability batches (crash runs, transient storm), outside the CI budget.
soak: install
	$(PY) -m pytest -n 3 -m soak $(PYTEST_ARGS)

## Real AWS, opt-in (never run by `make test` or CI): deploy, check, tear down, compare with the model.
## Needs AWS credentials, a Temporal server and a running worker.py; see README.md.
aws-smoke: install
	$(PY) scripts/aws_smoke.py $(ARGS)

## Stop exactly the processes `make demo` started.
stop:
	@if [ -x $(PY) ]; then $(PY) scripts/demo.py stop; else $(PYTHON) scripts/demo.py stop; fi

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

docs: install
	$(PY) scripts/spec_reference.py --write

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
