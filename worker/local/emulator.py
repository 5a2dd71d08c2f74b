"""The AWS API emulator for local runs and tests, chosen in this order:

1. `AWS_ENDPOINT_URL` when set (anything already running: LocalStack, found by its health
   endpoint, moto, ...);
2. LocalStack through testcontainers when a Docker engine answers (with `auto`, a missing `docker`
   extra or an image that will not start falls back to moto with a one-line notice);
3. moto's server in this process, on 127.0.0.1 and a free port (no Docker, no account).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import tempfile
import threading
import urllib.request
import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from worker.aws.clients import endpoint_is_localstack

logger = logging.getLogger(__name__)

Kind = Literal["external", "localstack", "moto"]
# `localstack/localstack:latest` needs LOCALSTACK_AUTH_TOKEN since 2026-03-23; without a token we
# use a pinned community image from before that date.
DEFAULT_LOCALSTACK_IMAGE = "localstack/localstack:4.4"
DOCKER_SOCKET = "/var/run/docker.sock"
# What the tests and the worker need; S3 checks signatures, so expired or tampered links are refused.
LOCALSTACK_SERVICES = ("s3", "sqs", "sns", "ses", "secretsmanager", "cloudformation", "iam", "sts", "cloudwatch")
LOCALSTACK_ENV = {"S3_SKIP_SIGNATURE_VALIDATION": "0"}


class EmulatorUnavailable(RuntimeError):
    """The emulator asked for cannot be started; the message is one line for the user."""
# LocalStack checks pre-signed URLs against the secret key "test" (its default account).
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@dataclass(frozen=True, slots=True)
class Emulator:
    kind: Kind
    url: str

    @property
    def has_sesv2(self) -> bool:
        """LocalStack Community has no SESv2: send with SES v1 there."""
        return self.kind != "localstack"


def docker_answers(env: MutableMapping[str, str] | None = None) -> bool:
    """True when a Docker engine answers a ping within a few seconds."""
    env = os.environ if env is None else env
    host = env.get("DOCKER_HOST", "")
    if not host and not os.path.exists(DOCKER_SOCKET):
        return False  # the common case here: no engine, and no client object to leak a socket
    with warnings.catch_warnings():
        # docker-py leaves the socket of a failed connection (a stale docker.sock, a dead
        # DOCKER_HOST) to the garbage collector: collected here, not reported later.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()


def set_emulator_defaults(env: MutableMapping[str, str]) -> None:
    """Region and fake credentials, unless the caller set their own."""
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1"))
    env.setdefault("AWS_REGION", env["AWS_DEFAULT_REGION"])
    for name, value in FAKE_CREDENTIALS.items():
        env.setdefault(name, value)


@contextmanager
def start_emulator(env: MutableMapping[str, str], prefer: str = "auto") -> Iterator[Emulator]:
    """Start (or find) the emulator and point `env` at it with AWS_ENDPOINT_URL."""
    set_emulator_defaults(env)
    external = env.get("AWS_ENDPOINT_URL")
    if external and prefer == "auto":
        if not endpoint_is_localstack(external):
            yield Emulator("external", external)
            return
        with cloudwatch_speaks_query(env):
            yield Emulator("localstack", external)
        return
    if prefer == "localstack" or (prefer == "auto" and docker_answers(env)):
        with ExitStack() as stack:
            try:
                url = stack.enter_context(_localstack(env))
                stack.enter_context(cloudwatch_speaks_query(env))
            except Exception as error:
                reason = _why_not_localstack(error)
                if prefer == "localstack":
                    raise EmulatorUnavailable(f"LocalStack cannot start: {reason}") from error
                logger.warning(f"LocalStack cannot start ({reason}); using the embedded moto emulator instead")
            else:
                env["AWS_ENDPOINT_URL"] = url
                yield Emulator("localstack", url)
                return
    with _moto() as url:
        env["AWS_ENDPOINT_URL"] = url
        yield Emulator("moto", url)


@contextmanager
def cloudwatch_speaks_query(env: MutableMapping[str, str]) -> Iterator[None]:
    """Clients made in `env` speak CloudWatch's query protocol, the only one LocalStack 4.4 reads.

    botocore picks CBOR or JSON when a service model offers them, as CloudWatch's does, and
    LocalStack 4.4 answers those with 500 "Missing Action in request". botocore loads service
    models from the directories in AWS_DATA_PATH before its own: a copy of its CloudWatch model that
    offers only `query` is put there for as long as the emulator runs (processes started with
    `env` inherit it).
    """
    from botocore.loaders import Loader

    loader = Loader()
    version = loader.determine_latest_version("cloudwatch", "service-2")
    model = loader.load_service_model("cloudwatch", "service-2", version)
    model["metadata"]["protocols"] = ["query"]
    model["metadata"]["protocol"] = "query"
    saved = env.get("AWS_DATA_PATH")
    with tempfile.TemporaryDirectory(prefix="sensormail-models-") as root:
        folder = Path(root, "cloudwatch", version)
        folder.mkdir(parents=True)
        (folder / "service-2.json").write_text(json.dumps(model))
        env["AWS_DATA_PATH"] = os.pathsep.join(filter(None, (root, saved)))
        try:
            yield
        finally:
            if saved is None:
                env.pop("AWS_DATA_PATH", None)
            else:
                env["AWS_DATA_PATH"] = saved


def _why_not_localstack(error: Exception) -> str:
    if isinstance(error, ModuleNotFoundError) and error.name and error.name.split(".")[0] == "testcontainers":
        return "the docker extra is not installed: pip install 'sensormail[docker]'"
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0] if first else ''}".rstrip(": ")


_moto_patched = False


def _make_moto_conditional_writes_atomic() -> None:
    """moto checks If-None-Match/If-Match and then writes, unlocked, on a threaded server: two
    concurrent conditional PUTs can both succeed, which S3 never allows. Serialise PutObject so
    the emulator keeps S3's guarantee that the progress records rely on."""
    global _moto_patched
    if _moto_patched:
        return
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    original = S3Response.put_object

    def put_object(self: Any) -> Any:
        with lock:
            return original(self)

    S3Response.put_object = put_object  # type: ignore[method-assign]
    _moto_patched = True


@contextmanager
def _moto() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ModuleNotFoundError as error:
        raise EmulatorUnavailable(
            f"the embedded emulator needs the local extra ({error.name} is missing): pip install 'sensormail[local]'"
        ) from error

    _make_moto_conditional_writes_atomic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def _localstack(env: MutableMapping[str, str]) -> Iterator[str]:
    from testcontainers.community.localstack import LocalStackContainer

    _without_ryuk_unless_available()

    token = env.get("LOCALSTACK_AUTH_TOKEN")
    image = env.get("SENSORMAIL_LOCALSTACK_IMAGE") or (
        "localstack/localstack:latest" if token else DEFAULT_LOCALSTACK_IMAGE
    )
    container = LocalStackContainer(image=image, region_name=env["AWS_DEFAULT_REGION"])
    container.with_services(*LOCALSTACK_SERVICES)
    for name, value in LOCALSTACK_ENV.items():
        container.with_env(name, value)
    if token:
        container.with_env("LOCALSTACK_AUTH_TOKEN", token)
    logger.info("starting LocalStack", extra={"image": image})
    with container:
        yield str(container.get_url())


def _without_ryuk_unless_available() -> None:
    """testcontainers starts its Ryuk reaper from an image of its own; with no registry (and the
    image not present) every start would fail. The reaper only cleans up after a crashed process:
    the LocalStack container is stopped here on every normal exit, so go on without it."""
    import docker
    from testcontainers.core.config import testcontainers_config as config

    if config.ryuk_disabled:
        return
    client = docker.from_env(timeout=30)
    try:
        try:
            client.images.get(config.ryuk_image)
            return
        except docker.errors.ImageNotFound:
            pass
        try:
            client.images.pull(config.ryuk_image)
            return
        except docker.errors.DockerException as error:
            logger.warning(f"cannot pull {config.ryuk_image} ({str(error).splitlines()[0][:200]}); "
                           "running LocalStack without the Ryuk reaper")
            config.ryuk_disabled = True
    finally:
        client.close()


def sent_emails(emulator: Emulator) -> list[dict[str, Any]]:
    """What the emulator's SES 'sent': [{"source", "destinations", "raw"}], oldest first."""
    if emulator.kind == "localstack":
        data = _get_json(f"{emulator.url}/_aws/ses")
        return [
            {"source": m.get("Source"), "destinations": m.get("Destination"), "raw": m.get("RawData", "")}
            for m in data.get("messages", [])
        ]
    if emulator.kind == "moto":
        # moto runs in this process: read its SES backend directly (SESv2 stores there too).
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        messages = ses_backends[DEFAULT_ACCOUNT_ID][region].sent_messages
        return [
            {"source": m.source, "destinations": m.destinations, "raw": m.raw_data}
            for m in messages
            if hasattr(m, "raw_data")
        ]
    data = _get_json(f"{emulator.url}/moto-api/data.json")
    return [
        {"source": m.get("source"), "destinations": m.get("destinations"), "raw": m.get("raw_data", "")}
        for m in data.get("ses", {}).get("RawMessage", [])
    ]


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - local emulator only
        result: dict[str, Any] = json.loads(response.read())
        return result
