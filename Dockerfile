# The sensormail worker image: `sensormail run`, configured by SENSORMAIL_* variables (README).
#   docker build -t sensormail .                       (add --platform linux/arm64 for ARM64 tasks)
#   docker run --read-only --env-file worker.env sensormail
# PYTHON_IMAGE picks the base (CI builds on python:3.11-slim-bookworm); the same base in both
# stages, because the virtualenv's interpreter link must resolve in the last.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtualenv without pip of its own (the base image's pip installs into it): only what runs.
RUN python -m venv --without-pip /opt/sensormail
WORKDIR /src
# The runtime lock (`make lock`) alone first: this layer is rebuilt only when the lock changes.
# Every file is checked against its hash; wheels only, so no compiler is needed; pip compiles
# the bytecode (the task's root file system is read-only).
COPY requirements/runtime.txt requirements/
RUN python -m pip --python /opt/sensormail/bin/python install --require-hashes --only-binary=:all: \
    -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY worker ./worker
# The package itself; its dependencies are all in the layer above.
RUN python -m pip --python /opt/sensormail/bin/python install --no-deps . \
 && /opt/sensormail/bin/sensormail --help > /dev/null

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/sensormail/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# /tmp belongs to the worker (mode 1777 as usual) and is a VOLUME: on Fargate a task-definition
# volume mounted at a path the image declares is created from the image's directory, owner and
# mode included; without the declaration it is an empty directory owned by root, mode 0755, and
# the worker (uid 10001, read-only root) could write neither its health file nor a temp file.
RUN groupadd --system --gid 10001 sensormail \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin sensormail \
 && chown 10001:10001 /tmp \
 && chmod 1777 /tmp
COPY --from=build /opt/sensormail /opt/sensormail
USER 10001:10001
VOLUME ["/tmp"]
# Exec form: the worker is PID 1 and gets ECS's SIGTERM itself, drains, and exits 0.
CMD ["sensormail", "run"]
