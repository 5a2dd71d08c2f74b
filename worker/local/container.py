"""The worker image run beside `sensormail local`, as ECS runs it: non-root, read-only root file
system, `/tmp` a volume of its own, stopped with SIGTERM. It joins the host's network, so the
emulator's endpoint and queue URLs that this process uses reach it unchanged."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ContainerUnavailable(RuntimeError):
    """The worker container cannot be started; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Stopped:
    exit_code: int
    seconds: float  # from SIGTERM to exit
    logs: str


def start_worker(image: str, env: Mapping[str, str]) -> Any:
    """Start `sensormail run` in `image`; returns the docker SDK's container."""
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ModuleNotFoundError as error:
        raise ContainerUnavailable("the docker extra is not installed: pip install 'sensormail[docker]'") from error
    try:
        client = docker.from_env(timeout=10)
        return client.containers.run(
            image,
            detach=True,
            network_mode="host",
            read_only=True,
            tmpfs={"/tmp": "mode=1777"},
            environment=dict(env),
            user="10001:10001",
        )
    except ImageNotFound as error:
        raise ContainerUnavailable(f"no image {image}: build it first (make docker-image)") from error
    except DockerException as error:
        raise ContainerUnavailable(f"the worker container did not start: {error}") from error


def stop_worker(container: Any, grace_s: float) -> Stopped:
    """SIGTERM, as ECS sends it, then SIGKILL after `grace_s`; the container is removed."""
    started = time.monotonic()
    try:
        container.stop(timeout=int(grace_s))
        code = int(container.wait(timeout=grace_s + 10)["StatusCode"])
        seconds = time.monotonic() - started
        logs = container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)
    return Stopped(code, seconds, logs)
