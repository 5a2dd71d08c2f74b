"""The image built from the Dockerfile, run as ECS Fargate runs it: uid 10001, read-only root file
system, /tmp a task volume, host network to the test's emulator, SIGTERM from `docker stop`.

Fargate's /tmp: the task definition mounts a bind volume there. Fargate creates it empty, owned by
root, mode 0755, unless the image declares the same path as a VOLUME: then it copies the image's
directory into it, owner and mode included (ECS developer guide, "Use bind mounts with Amazon ECS").
`fargate_volume` below prepares a host directory the same way and the test bind-mounts it.

Engine and image: the docker SDK (installed with testcontainers), because its answers are values
(exit codes, the wait status, stdout and stderr apart) rather than CLI text, and it needs no
`docker` binary. No engine: skipped, except under CI=true, where it fails. The base image is
SENSORMAIL_TEST_PYTHON_IMAGE, else the Dockerfile's default when present locally, else the
python:3.11-slim-bookworm stand-in; SENSORMAIL_TEST_IMAGE runs an image already built instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import SampleReader
from tests.helpers import attachments_of, fallback_notices, put_incoming, sent_to, text_of, wait_for
from worker.aws.clients import Clients
from worker.config import DEFAULT_HEALTH_FILE, Settings
from worker.local.emulator import Emulator, docker_answers
from worker.local.provision import LocalResources

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
TAG = "sensormail:system-test"
STAND_IN_BASE = "python:3.11-slim-bookworm"
UID = "10001"
DRAIN_SECONDS = 5
STOP_TIMEOUT = DRAIN_SECONDS + 10  # deploy/service.yaml: stopTimeout = drain + 10 s


def dockerfile_default_base() -> str:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile declares ARG PYTHON_IMAGE=<default>"
    return match.group(1)


def present(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


@dataclass(frozen=True)
class Image:
    client: Any  # docker.DockerClient (untyped)
    tag: str
    base: str | None  # None: SENSORMAIL_TEST_IMAGE, built elsewhere


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    if not docker_answers():
        reason = "no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}, and CI=true: the container test must run in CI")
        pytest.skip(reason)
    import docker

    client = docker.from_env(timeout=120)
    try:
        prebuilt = os.environ.get("SENSORMAIL_TEST_IMAGE")
        if prebuilt:
            yield Image(client, prebuilt, None)
            return
        default = dockerfile_default_base()
        base = os.environ.get("SENSORMAIL_TEST_PYTHON_IMAGE") or (
            default if present(client, default) or not present(client, STAND_IN_BASE) else STAND_IN_BASE
        )
        started = time.monotonic()
        # The engine's API builder (no BuildKit, so no `# syntax=` image to fetch); layers cached.
        client.images.build(path=str(ROOT), tag=TAG, buildargs={"PYTHON_IMAGE": base}, rm=True, forcerm=True)
        print(f"\nbuilt {TAG} on {base} in {time.monotonic() - started:.1f} s, "
              f"{client.images.get(TAG).attrs['Size'] / 1e6:.1f} MB")
        yield Image(client, TAG, base)
    finally:
        client.close()


def fargate_volume(image: Image, container_path: str, directory: Path) -> tuple[int, int, int]:
    """Prepare `directory` as Fargate prepares a task bind volume mounted at `container_path`:
    empty, root:root, 0755; or, when the image declares that path a VOLUME, a copy of the image's
    directory with its owner and mode. Done as root in a throwaway container (the host user may not
    be root). Returns the volume's (uid, gid, mode)."""
    declared = container_path in (image.client.images.get(image.tag).attrs["Config"].get("Volumes") or {})
    directory.mkdir()
    if declared:
        script = (f"cp -a {container_path}/. /volume/ && chown $(stat -c %u:%g {container_path}) /volume"
                  f" && chmod $(stat -c %a {container_path}) /volume")
    else:
        script = "chown 0:0 /volume && chmod 0755 /volume"
    helper = image.client.containers.create(
        image.tag, ["sh", "-c", f"{script} && stat -c '%u %g %a' /volume"], user="0",
        network_mode="none", volumes={str(directory): {"bind": "/volume", "mode": "rw"}},
    )
    try:
        helper.start()
        assert helper.wait(timeout=60)["StatusCode"] == 0, helper.logs().decode()
        uid, gid, mode = helper.logs(stdout=True, stderr=False).decode().split()
    finally:
        helper.remove(v=True, force=True)
    return int(uid), int(gid), int(mode, 8)


def worker_env(emulator: Emulator, resources: LocalResources, settings: Settings) -> dict[str, str]:
    """What the task definition sets, pointed at the test's emulator (reachable on the host network)."""
    aws = {name: os.environ[name] for name in
           ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if name in os.environ}
    return {
        **aws,
        **resources.worker_env(),
        "AWS_ENDPOINT_URL": emulator.url,
        "SENSORMAIL_SES_API": settings.ses_api,
        "SENSORMAIL_DRAIN_SECONDS": str(DRAIN_SECONDS),
    }


def health(container: Any) -> tuple[int, str]:
    result = container.exec_run(["sensormail", "health"])
    return int(result.exit_code), result.output.decode()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
        assert isinstance(body, bytes)
        return body


@pytest.mark.anyio
async def test_the_image_runs_as_ecs_runs_it(
    image: Image, emulator: Emulator, resources: LocalResources, settings: Settings, aws: Clients,
    sample: SampleReader, tmp_path: Path,
) -> None:
    volume = fargate_volume(image, "/tmp", tmp_path / "fargate-tmp")
    print(f"\n/tmp volume as Fargate would create it: uid {volume[0]}, gid {volume[1]}, mode {volume[2]:o}")
    container = image.client.containers.run(
        image.tag, detach=True, user=UID, read_only=True, network_mode="host",
        volumes={str(tmp_path / "fargate-tmp"): {"bind": "/tmp", "mode": "rw"}},
        environment=worker_env(emulator, resources, settings),
    )
    try:
        # The image's own user, command and root file system.
        assert container.attrs["Config"]["Cmd"] == ["sensormail", "run"]
        assert container.exec_run(["id", "-u"]).output.decode().strip() == UID
        assert container.exec_run(["touch", "/opt/sensormail/probe"]).exit_code != 0  # read-only root

        # The container health check (deploy/service.yaml) passes once the worker runs.
        try:
            await wait_for(lambda: health(container)[0] == 0, timeout=30, interval=0.5)
        except TimeoutError:
            raise AssertionError(f"`sensormail health` never passed: {health(container)}; worker log:\n"
                                 f"{container.logs().decode()}") from None
        print(f"health check: exit 0 ({DEFAULT_HEALTH_FILE})")

        # A sample with an attachment: the sent email's link downloads the same bytes.
        raw = sample("alarm-with-csv.eml")
        ref = await put_incoming(aws, resources, raw)
        [sent] = await wait_for(lambda: sent_to(emulator, ref.message_id), timeout=60)
        assert {a.addr_spec for a in sent["To"].addresses} == {"ops@example.com", "maintenance@example.org"}
        [url] = re.findall(r"https?://\S+", text_of(sent))
        assert await anyio.to_thread.run_sync(fetch, url) == attachments_of(raw)["pump2-trend.csv"]

        # The sample without recipients: a notice on the fallback topic, its link works too.
        raw = sample("no-recipients.eml")
        ref = await put_incoming(aws, resources, raw)
        [notice] = await wait_for(lambda: fallback_notices(aws, resources), timeout=60)
        assert notice["reason"] == "no recipient block"
        assert notice["raw_email"] == f"s3://{resources.incoming_bucket}/{ref.key}"
        [entry] = notice["attachments"]
        assert await anyio.to_thread.run_sync(fetch, entry["url"]) == attachments_of(raw)["report.bin"]

        # ECS stops the task: SIGTERM (mid long poll here), exit 0 within the drain time.
        started = time.monotonic()
        container.stop(timeout=STOP_TIMEOUT)
        stopped_in = time.monotonic() - started
        status = container.wait(timeout=STOP_TIMEOUT)
        print(f"docker stop: exit {status['StatusCode']} after {stopped_in:.2f} s (drain {DRAIN_SECONDS} s)")
        assert status["StatusCode"] == 0, container.logs().decode()
        assert stopped_in < DRAIN_SECONDS + 2

        # Logs (both streams, as awslogs ships them): JSON lines only, nothing unstructured.
        lines = container.logs(stdout=True, stderr=True).decode().splitlines()
        records = [json.loads(line) for line in lines]
        assert all(isinstance(r, dict) and {"time", "level", "message"} <= r.keys() for r in records)
        messages = [r["message"] for r in records]
        assert "worker started" in messages and messages[-1] == "worker stopped"
        assert [r.get("outcome") for r in records if r["message"] == "email processed"] == ["sent", "fallback"]
        assert "cannot write the health file" not in messages
        assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")], records
    finally:
        container.remove(v=True, force=True)


def test_docker_demo_runs_the_image_as_the_worker_against_localstack(image: Image) -> None:
    """`make docker-demo` less its build: `sensormail local` starts LocalStack through testcontainers
    and runs the image as the worker; the three samples go in over SMTP and come out as they should."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "worker", "local", "--backend", "localstack", "--worker-image", image.tag,
         "--smtp-port", "0", "--send-sample", "all", "--once"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "AWS emulator (localstack)" in out
    assert f"started from {image.tag}" in out
    assert 'SENT      "Vibration alarm, pump 2"' in out and "to ops@example.com, maintenance@example.org" in out
    assert 'SENT      "Camera snapshot"' in out and "to security@example.com" in out
    assert 'FALLBACK  "Daily report"' in out and "reason: no recipient block" in out
    assert out.count("downloaded, SHA-256 matches") == 4  # csv, two images, report.bin
    assert re.search(r"worker container stopped \(SIGTERM\): exit 0 in \d+\.\d s", out)
