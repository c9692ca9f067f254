# Two entry points that work on a fresh machine:
#   make demo   set up .venv and run the whole pipeline on the built-in corpus (no downloads)
#   make test   set up .venv with the test tools, lint and format-check (ruff), run the test suite
VENV ?= .venv
DEMO_DIR ?= runs/demo

.PHONY: setup setup-dev demo test

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh --dev

demo: setup
	bash scripts/demo.sh $(DEMO_DIR)

test: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -q tests
