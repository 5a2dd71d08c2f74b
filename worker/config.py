"""Settings: read once from the environment at start-up, validated, frozen.

Every variable carries the `SENSORMAIL_` prefix; the AWS SDK's own variables (`AWS_REGION`,
`AWS_ENDPOINT_URL`, credentials) keep their standard meaning and are read by botocore itself, except
the region: botocore reads only `AWS_DEFAULT_REGION`, so `region` is read here, `AWS_REGION` first
(as the AWS CLI v2 and the other AWS SDKs do), and handed to every client.
A missing or invalid value raises ConfigError with one line naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from worker.errors import ConfigError

T = TypeVar("T")

DEFAULT_MARKER = ":Email_Rxers_Code:"
DEFAULT_HEALTH_FILE = "/tmp/sensormail-alive"  # read by `sensormail health`, the container check
MiB = 1024 * 1024
# SigV4 pre-signed URLs are capped at 7 days by S3.
MAX_LINK_EXPIRY_S = 7 * 24 * 3600
# S3 multipart parts must be at least 5 MiB (except the last) and at most 5 GiB.
MIN_PART_SIZE = 5 * MiB
ANY_RECIPIENT = "*"  # SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS=* : any domain (an open relay; say so loudly)
MAX_RECIPIENTS_CAP = 1000


@dataclass(frozen=True, slots=True)
class Limits:
    """What one email may contain before it is refused as malformed."""

    max_header_bytes: int = 256 * 1024
    max_depth: int = 32
    max_parts: int = 1_000  # leaves, and apart from them multiparts (more than max_attachments are refused anyway)
    max_total_header_bytes: int = 256 * 1024  # all header blocks of one email together
    max_body_bytes: int = 1 * MiB  # a text or html body larger than this is also stored as a file
    max_attachments: int = 500


@dataclass(frozen=True, slots=True)
class Settings:
    queue_url: str = ""
    attachments_bucket: str = ""
    sender: str = ""
    fallback_topic_arn: str = ""
    dlq_url: str | None = None
    link_expiry_s: int = 3 * 24 * 3600
    recipient_marker: str = DEFAULT_MARKER
    concurrency: int = 4
    ses_api: Literal["v1", "v2"] = "v2"
    configuration_set: str | None = None
    drain_timeout_s: float = 25.0
    visibility_timeout_s: int = 60
    wait_time_s: int = 20
    read_chunk_bytes: int = 1 * MiB
    part_size_bytes: int = 8 * MiB
    parts_in_flight: int = 2  # parts of one attachment uploading while the email is read on
    attachments_prefix: str = "attachments/"
    state_prefix: str = "state/"
    lease_s: int = 120
    max_send_rate: float = 0.0  # SES sends per second across all handlers; 0: no limit
    email_timeout_s: int = 900
    allowed_senders: tuple[str, ...] = ()  # addresses or domains; empty: anyone
    # Domains recipients may be in; empty: none ("closed"), ("*",): any. `sensormail run` refuses
    # to start without the variable, except against an emulator (see from_env).
    allowed_recipient_domains: tuple[str, ...] = ()
    intake_domains: tuple[str, ...] = ()  # never sent to (a loop): SENSORMAIL_INTAKE_DOMAIN, the intake address's
    max_recipients: int = 50  # recipients one email may ask for; more: nothing sent, fallback
    sender_rate: int = 60  # emails a minute per sender address; over it they wait; 0: no budget
    spam_action: Literal["quarantine", "pass"] = "quarantine"
    signer_secret_arn: str | None = None
    health_file: str = DEFAULT_HEALTH_FILE  # touched every 15 s while the event loop runs
    ecs_cluster: str | None = None  # the kill switch (`sensormail pause`) scales this service to zero
    ecs_service: str | None = None
    intake_address: str | None = None  # the secret address devices send to (`sensormail smtp-credentials`)
    endpoint_url: str | None = None
    region: str | None = None  # None: botocore's own resolution (the profile's region in ~/.aws/config)
    limits: Limits = field(default_factory=Limits)

    @property
    def any_recipient(self) -> bool:
        """Recipients may be in any domain: the worker is an open relay for whoever gets mail in."""
        return ANY_RECIPIENT in self.allowed_recipient_domains

    @property
    def heartbeat_interval_s(self) -> float:
        """Extend visibility when a third of it is left, so one late heartbeat is survivable."""
        return self.visibility_timeout_s / 3

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, require_aws: bool = True) -> Settings:
        """Build and validate settings; `require_aws=False` for commands that touch no queue."""
        r = _Reader(env)
        d = cls()
        lim = Limits()
        required = r.required if require_aws else r.optional_str
        settings = cls(
            queue_url=required("SENSORMAIL_QUEUE_URL") or "",
            attachments_bucket=required("SENSORMAIL_ATTACHMENTS_BUCKET") or "",
            sender=required("SENSORMAIL_SENDER") or "",
            fallback_topic_arn=required("SENSORMAIL_FALLBACK_TOPIC_ARN") or "",
            dlq_url=r.optional_str("SENSORMAIL_DLQ_URL"),
            link_expiry_s=r.integer("SENSORMAIL_LINK_EXPIRY_SECONDS", d.link_expiry_s, 1, MAX_LINK_EXPIRY_S),
            recipient_marker=r.marker("SENSORMAIL_RECIPIENT_MARKER", DEFAULT_MARKER),
            concurrency=r.integer("SENSORMAIL_CONCURRENCY", d.concurrency, 1, 256),
            ses_api=r.choice("SENSORMAIL_SES_API", "v2", ("v1", "v2")),  # type: ignore[arg-type]
            configuration_set=r.optional_str("SENSORMAIL_CONFIGURATION_SET"),
            drain_timeout_s=float(r.integer("SENSORMAIL_DRAIN_SECONDS", int(d.drain_timeout_s), 0, 3600)),
            visibility_timeout_s=r.integer("SENSORMAIL_VISIBILITY_SECONDS", d.visibility_timeout_s, 10, 12 * 3600),
            wait_time_s=r.integer("SENSORMAIL_WAIT_SECONDS", d.wait_time_s, 0, 20),
            read_chunk_bytes=r.integer("SENSORMAIL_READ_CHUNK_BYTES", d.read_chunk_bytes, 4096, 64 * MiB),
            part_size_bytes=r.integer("SENSORMAIL_PART_SIZE_BYTES", d.part_size_bytes, MIN_PART_SIZE, 512 * MiB),
            parts_in_flight=r.integer("SENSORMAIL_PARTS_IN_FLIGHT", d.parts_in_flight, 0, 16),
            endpoint_url=r.optional_str("AWS_ENDPOINT_URL"),
            region=r.optional_str("AWS_REGION") or r.optional_str("AWS_DEFAULT_REGION"),
            lease_s=r.integer("SENSORMAIL_LEASE_SECONDS", d.lease_s, 10, 12 * 3600),
            max_send_rate=float(r.integer("SENSORMAIL_MAX_SEND_RATE", 0, 0, 100_000)),
            signer_secret_arn=r.optional_str("SENSORMAIL_SIGNER_SECRET_ARN"),
            health_file=r.optional_str("SENSORMAIL_HEALTH_FILE") or DEFAULT_HEALTH_FILE,
            ecs_cluster=r.optional_str("SENSORMAIL_ECS_CLUSTER"),
            ecs_service=r.optional_str("SENSORMAIL_ECS_SERVICE"),
            intake_address=r.optional_str("SENSORMAIL_INTAKE_ADDRESS"),
            allowed_senders=r.csv("SENSORMAIL_ALLOWED_SENDERS"),
            allowed_recipient_domains=_recipient_domains(r, require_aws),
            intake_domains=_intake_domains(r),
            max_recipients=r.integer("SENSORMAIL_MAX_RECIPIENTS", d.max_recipients, 1, MAX_RECIPIENTS_CAP),
            sender_rate=r.integer("SENSORMAIL_SENDER_RATE", d.sender_rate, 0, 100_000),
            spam_action=r.choice("SENSORMAIL_SPAM_ACTION", "quarantine", ("quarantine", "pass")),  # type: ignore[arg-type]
            email_timeout_s=r.integer("SENSORMAIL_EMAIL_TIMEOUT_SECONDS", d.email_timeout_s, 10, 12 * 3600),
            limits=Limits(
                max_header_bytes=r.integer("SENSORMAIL_MAX_HEADER_BYTES", lim.max_header_bytes, 1024, 64 * MiB),
                max_depth=r.integer("SENSORMAIL_MAX_DEPTH", lim.max_depth, 1, 1000),
                max_parts=r.integer("SENSORMAIL_MAX_PARTS", lim.max_parts, 1, 1_000_000),
                max_total_header_bytes=r.integer(
                    "SENSORMAIL_MAX_TOTAL_HEADER_BYTES", lim.max_total_header_bytes, 1024, 64 * MiB
                ),
                max_body_bytes=r.integer("SENSORMAIL_MAX_BODY_BYTES", lim.max_body_bytes, 1024, 256 * MiB),
                max_attachments=r.integer("SENSORMAIL_MAX_ATTACHMENTS", lim.max_attachments, 1, 1_000_000),
            ),
        )
        if require_aws and "@" not in settings.sender:
            raise ConfigError("SENSORMAIL_SENDER: expected an email address (a verified SES identity)")
        if require_aws and not settings.fallback_topic_arn.startswith("arn:"):
            raise ConfigError("SENSORMAIL_FALLBACK_TOPIC_ARN: expected an SNS topic ARN (arn:aws:sns:...)")
        return settings


def _recipient_domains(r: _Reader, require_aws: bool) -> tuple[str, ...]:
    """SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS, required by the worker: closed unless configured.

    Unset is accepted only for commands that send nothing (`require_aws=False`: nobody); an
    emulator gets no exception (`sensormail local` provisions its own list)."""
    name = "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS"
    domains = r.csv(name, allow_any=True)
    if domains or r.optional_str(name) is not None or not require_aws:
        return domains
    raise ConfigError(
        f"{name}: required: comma-separated domains forwarded emails may go to"
        f" ({ANY_RECIPIENT} allows any domain: an open relay for anyone who gets mail in)"
    )


def _intake_domains(r: _Reader) -> tuple[str, ...]:
    """SENSORMAIL_INTAKE_DOMAIN (comma-separated), and the domain of SENSORMAIL_INTAKE_ADDRESS."""
    domains = list(r.csv("SENSORMAIL_INTAKE_DOMAIN"))
    if (address := r.optional_str("SENSORMAIL_INTAKE_ADDRESS")) is not None:
        if address.count("@") != 1 or "." not in address.rpartition("@")[2]:
            raise ConfigError(f"SENSORMAIL_INTAKE_ADDRESS: expected an email address, got {address!r}")
        domains.append(address.rpartition("@")[2].lower())
    return tuple(dict.fromkeys(domains))


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def optional_str(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional_str(name)
        if value is None:
            raise ConfigError(f"{name}: required but not set")
        return value

    def _parse(self, name: str, default: T, parse: Callable[[str], T], expects: str) -> T:
        raw = self.optional_str(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected {expects}, got {raw!r}") from None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        expects = f"a whole number from {low} to {high}"

        def parse(raw: str) -> int:
            value = int(raw)
            if not low <= value <= high:
                raise ValueError
            return value

        return self._parse(name, default, parse, expects)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(raw: str) -> str:
            if raw.lower() not in choices:
                raise ValueError
            return raw.lower()

        return self._parse(name, default, parse, "one of " + ", ".join(choices))

    def csv(self, name: str, *, allow_any: bool = False) -> tuple[str, ...]:
        """A comma-separated list of addresses or domains, lowercased; `allow_any`: "*" too."""
        raw = self.optional_str(name) or ""
        items = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
        for item in items:
            if allow_any and item == ANY_RECIPIENT:
                continue
            if any(c.isspace() for c in item) or item.count("@") > 1 or "." not in item:
                raise ConfigError(f"{name}: expected comma-separated addresses or domains, got {item!r}")
        return items

    def marker(self, name: str, default: str) -> str:
        def parse(raw: str) -> str:
            if len(raw) < 3 or any(c.isspace() or c == "@" for c in raw):
                raise ValueError
            return raw

        return self._parse(name, default, parse, "at least 3 characters, no spaces or '@'")
