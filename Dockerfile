# syntax=docker/dockerfile:1
# The sensormail worker image: `sensormail run`, configured by SENSORMAIL_* variables (README).
#   docker build -t sensormail .                       (add --platform linux/arm64 for ARM64 tasks)
#   docker run --env-file worker.env sensormail
# The same Python base in both stages: the virtualenv's interpreter link must resolve in the last.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtualenv without pip of its own (the base image's pip installs into it): only what runs.
RUN python -m venv --without-pip /opt/sensormail
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
# The package and its runtime dependencies from pyproject.toml: the set `make test` installs
# less its extras (the local emulator, LocalStack and the test tools). Every dependency ships
# wheels, so no compiler is needed; pip compiles the bytecode (the task's root is read-only).
RUN python -m pip --python /opt/sensormail/bin/python install --only-binary=:all: . \
 && /opt/sensormail/bin/sensormail --help > /dev/null

FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PATH=/opt/sensormail/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 sensormail \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin sensormail
COPY --from=build /opt/sensormail /opt/sensormail
USER 10001:10001
# Exec form: the worker is PID 1 and gets ECS's SIGTERM itself, drains, and exits 0.
CMD ["sensormail", "run"]
