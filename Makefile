# Two entry points do all set-up on a fresh machine:
#   make demo   the whole flow on an embedded AWS emulator (sample emails in, links out)
#   make test   type check and the whole test suite, on moto and (with a Docker engine) LocalStack
# The worker as a container, against LocalStack started by testcontainers (needs a Docker engine):
#   make docker-demo   builds the image, then runs it as the worker for the three samples
# and one refreshes the lock files from pyproject.toml's ranges:
#   make lock   requirements/test.txt (what `make setup` installs) and requirements/runtime.txt (the image)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The lock tool, pinned: the same version writes the same files.
UV_VERSION ?= 0.13.9
# One lock serves Python 3.11 (CI, the stand-in base image) to 3.13 (the production image):
# --universal keeps environment markers instead of resolving for this interpreter only.
COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --upgrade --custom-compile-command "make lock"

# The image `make docker-image` builds; PYTHON_IMAGE=... picks another base (the Dockerfile's ARG).
IMAGE ?= sensormail:local
PYTHON_IMAGE ?=

.PHONY: setup demo test local lock docker-image docker-demo clean

$(STAMP): pyproject.toml requirements/test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The locked set: the worker's dependencies, moto and aiobotocore resolved together (one
	# botocore), the test tools; every file checked against its hash.
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/test.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sensormail local --backend moto --send-sample all --once

local: $(STAMP)
	$(BIN)/sensormail local

test: $(STAMP)
	$(BIN)/mypy
	tests/with-docker-engine.sh $(BIN)/pytest

docker-image:
	docker build -t $(IMAGE) $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) .

docker-demo: $(STAMP) docker-image
	$(BIN)/sensormail local --backend localstack --worker-image $(IMAGE) --send-sample all --once

# The test set first; the runtime set is constrained by it, so the image runs exactly the
# versions the tests ran (runtime.txt is a subset of test.txt).
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(COMPILE) --extra test -o requirements/test.txt
	$(COMPILE) --constraint requirements/test.txt -o requirements/runtime.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
