"""Logging: JSON lines on stdout (python-json-logger), plain text when stdout is a terminal.

Each module logs through `logging.getLogger(__name__)`; fields go in `extra=`. The consumer writes
one canonical line per email (`email processed`) with its outcome, duration and sizes.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class _TextFormatter(logging.Formatter):
    """`time level logger message key=value ...`: the JSON fields, readable in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        return f"{base} {extras}" if extras else base


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "urllib3", "werkzeug", "moto", "mail.log", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call, without None values."""
    return {k: v for k, v in values.items() if v is not None}
