"""Logging: JSON lines on stdout (python-json-logger), plain text when stdout is a terminal.

Each module logs through `logging.getLogger(__name__)`; fields go in `extra=`. The consumer writes
one canonical line per email (`email processed`) with its outcome, duration and sizes.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Embedded-metric fields: for CloudWatch, noise in a terminal.
_METRIC_FIELDS = frozenset({"_aws", "Outcome", "EmailsProcessed", "ProcessingLatency", "AttachmentsStored", "BytesStored"})


class _TextFormatter(logging.Formatter):
    """`time level logger message key=value ...`: the JSON fields, readable in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD and k not in _METRIC_FIELDS)
        return f"{base} {extras}" if extras else base


# A pre-signed URL's secrets, written plainly (`X-Amz-Signature=...`), percent-encoded once
# (`X-Amz-Signature%3D...`, a URL inside another URL's query) or twice (`%253D`). A value ends at
# the next parameter (`&`, `%26`, `%2526`), a blank, a quote or markup.
_SECRET_PARAMS = re.compile(
    r"(X-Amz-(?:Signature|Security-Token|Credential)(?:=|%3D|%253D))(?:%(?!(?:25)?26)|[^&%\s\"'<>\\])+",
    re.IGNORECASE,
)
_MARK = "x-amz-"
_MAX_DEPTH = 20


def redact(text: str) -> str:
    """A pre-signed URL with its signature, token and credential replaced: safe to log."""
    return _SECRET_PARAMS.sub(r"\1REDACTED", text) if _MARK in text.lower() else text


def scrub(value: Any, depth: int = 0) -> Any:
    """`value` with every string in it redacted: dict keys and values, list, tuple and set items,
    at any depth. Any other object that prints a secret is replaced by its redacted text."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= _MAX_DEPTH:
        return redact(repr(value))
    if isinstance(value, dict):
        return {scrub(k, depth + 1): scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub(v, depth + 1) for v in value]
    text = str(value)
    return redact(text) if _MARK in text.lower() else value


class RedactingFilter(logging.Filter):
    """No log line carries a usable pre-signed URL: not in the message, not in any field (at any
    depth), not in the traceback or the stack."""

    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict) and not record.args:
            record.msg = scrub(record.msg)  # python-json-logger writes a dict message as fields
        else:
            if record.args or not isinstance(record.msg, str):
                record.msg, record.args = record.getMessage(), None
            record.msg = redact(record.msg)
        if record.exc_info:
            # Both formatters print `exc_text` when `exc_info` is gone (python-json-logger as its
            # `exc_info` field): the traceback is written once, here, and redacted.
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD:
                setattr(record, name, scrub(value))
        return True


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Install one handler on the root logger; `json=None` picks JSON unless the stream is a tty."""
    out = stream or sys.stdout
    use_json = (not out.isatty()) if json is None else json
    handler = logging.StreamHandler(out)
    formatter: logging.Formatter
    if use_json:
        formatter = JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
        )
    else:
        formatter = _TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "urllib3", "werkzeug", "moto", "mail.log", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call, without None values."""
    return {k: v for k, v in values.items() if v is not None}


METRICS_NAMESPACE = "Sensormail"


def emf(outcome: str, duration_s: float, attachments: int = 0, stored_bytes: int = 0) -> dict[str, Any]:
    """CloudWatch embedded-metric-format fields for the canonical per-email log line.

    Merged into that line's JSON: CloudWatch Logs extracts the metrics EmailsProcessed,
    ProcessingLatency, AttachmentsStored and BytesStored by Outcome from the log event itself
    (the awslogs driver's PutLogEvents is enough; no agent needed). Costs no API call.
    """
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [["Outcome"]],
                    "Metrics": [
                        {"Name": "EmailsProcessed", "Unit": "Count"},
                        {"Name": "ProcessingLatency", "Unit": "Milliseconds"},
                        {"Name": "AttachmentsStored", "Unit": "Count"},
                        {"Name": "BytesStored", "Unit": "Bytes"},
                    ],
                }
            ],
        },
        "Outcome": outcome,
        "EmailsProcessed": 1,
        "ProcessingLatency": round(duration_s * 1000, 1),
        "AttachmentsStored": attachments,
        "BytesStored": stored_bytes,
    }
