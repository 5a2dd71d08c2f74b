#!/usr/bin/env bash
# Runs a command (the test suite) with a Docker engine when one can be had, so the LocalStack and
# container tests run rather than skip.
#   - An engine that answers, and the images it can pull, are used as they are (a user's Docker).
#   - Where ../shared/tools/docker-engine exists (our machines and CI), it starts Debian's engine if
#     none answers and provides the images the tests need: pulled where a registry answers, else
#     stand-ins built from Debian's and PyPI's packages; its exports (legacy builder, no Ryuk) apply.
#   - Otherwise the command runs without an engine: those tests skip with the reason, or fail under
#     CI=true, where an engine is required.
set -euo pipefail
cd "$(dirname "$0")/.."

tool=../shared/tools/docker-engine
# The LocalStack image the tests pin (worker/local/emulator.py) and the container test's base.
images=("${SENSORMAIL_LOCALSTACK_IMAGE:-localstack/localstack:4.4}" "${SENSORMAIL_TEST_PYTHON_IMAGE:-python:3.11-slim-bookworm}")

if [ -x "$tool" ]; then
  started=$SECONDS
  if exports=$("$tool" up); then
    eval "$exports"
    "$tool" image "${images[@]}"
    echo "with-docker-engine: engine and images ready in $((SECONDS - started)) s" >&2
  else
    echo "with-docker-engine: no Docker engine (docker-engine up failed); tests that need one skip" >&2
  fi
elif ! docker info >/dev/null 2>&1; then
  echo "with-docker-engine: no Docker engine answers; tests that need one skip" >&2
fi
exec "$@"
