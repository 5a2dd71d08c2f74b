# Two entry points do all set-up on a fresh machine:
#   make demo   the whole flow on an embedded AWS emulator (sample emails in, links out)
#   make test   type check and the whole test suite, on moto and (with a Docker engine) LocalStack
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test local clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# One resolve for the worker, moto and aiobotocore, so botocore versions agree.
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sensormail local --backend moto --send-sample all --once

local: $(STAMP)
	$(BIN)/sensormail local

test: $(STAMP)
	$(BIN)/mypy
	tests/with-docker-engine.sh $(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
