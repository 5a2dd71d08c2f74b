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


_SECRET_PARAMS = re.compile(r"(X-Amz-(?:Signature|Security-Token|Credential)=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    """A pre-signed URL with its signature, token and credential replaced: safe to log."""
    return _SECRET_PARAMS.sub(r"\1REDACTED", text)


class RedactingFilter(logging.Filter):
    """No log line carries a usable pre-signed URL: not in the message, not in any field."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "X-Amz-" in record.msg:
            record.msg = redact(record.msg)
        if record.args:
            record.msg, record.args = redact(record.getMessage()), None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD and isinstance(value, str) and "X-Amz-" in value:
                setattr(record, name, redact(value))
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
