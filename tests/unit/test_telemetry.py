from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from worker.telemetry import configure_logging, emf, redact

URL = ("https://b.s3.amazonaws.com/attachments/x/1-a.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
       "&X-Amz-Credential=AKIAEXAMPLE%2F20261124%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261124T080000Z"
       "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=IQoJb3JpZ2luX2Vj"
       "&X-Amz-Signature=0123456789abcdef")


def test_redact_keeps_the_url_useless() -> None:
    out = redact(URL)
    assert "0123456789abcdef" not in out and "IQoJb3JpZ2luX2Vj" not in out and "AKIAEXAMPLE" not in out
    assert "X-Amz-Expires=3600" in out and out.startswith("https://b.s3.amazonaws.com/attachments/x/1-a.csv?")


def test_no_log_line_carries_a_signature() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, json=True)
    log = logging.getLogger("test.redaction")
    log.warning("link %s failed", URL, extra={"url": URL})
    log.warning(f"inline {URL}")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    assert "0123456789abcdef" not in stream.getvalue()
    assert lines[0]["url"].endswith("X-Amz-Signature=REDACTED")


def test_emf_fields_are_a_valid_embedded_metric_document() -> None:
    doc = emf("sent", 0.25, 2, 1000)
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Sensormail" and directive["Dimensions"] == [["Outcome"]]
    for metric in directive["Metrics"]:
        assert metric["Name"] in doc  # every declared metric has its value at the root
    assert (doc["Outcome"], doc["EmailsProcessed"], doc["ProcessingLatency"]) == ("sent", 1, 250.0)


SECRETS = ("0123456789abcdef", "IQoJb3JpZ2luX2Vj", "AKIAEXAMPLE")


def _json_lines(emit: Callable[[logging.Logger], None]) -> tuple[str, list[dict[str, Any]]]:
    stream = io.StringIO()
    configure_logging(stream=stream, json=True)
    emit(logging.getLogger("test.redaction"))
    text = stream.getvalue()
    return text, [json.loads(line) for line in text.splitlines()]


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked in {text!r}"


def test_fields_are_redacted_at_any_depth() -> None:
    nested = {"links": [URL, (URL,)], "by_name": {URL: {"url": URL}}, "set": {URL}}
    text, lines = _json_lines(lambda log: log.warning("sent", extra={"urls": [URL, URL], "outcome": nested}))
    _assert_no_secret(text)
    assert lines[0]["urls"][1].endswith("X-Amz-Signature=REDACTED")
    assert lines[0]["outcome"]["links"][1][0].startswith("https://b.s3.amazonaws.com/attachments/x/1-a.csv?")


def test_an_object_that_prints_a_url_is_redacted() -> None:
    class Stored:
        def __str__(self) -> str:
            return f"Stored(url={URL})"

    text, _ = _json_lines(lambda log: log.warning("stored", extra={"stored": Stored()}))
    _assert_no_secret(text)
    assert "Stored(url=https://b.s3.amazonaws.com/" in text


def test_a_traceback_is_redacted_in_json_and_in_text() -> None:
    def fail(log: logging.Logger) -> None:
        try:
            raise RuntimeError(f"GET {URL} answered 500")
        except RuntimeError:
            log.exception("upload failed")

    text, lines = _json_lines(fail)
    _assert_no_secret(text)
    assert "RuntimeError: GET https://b.s3.amazonaws.com/" in lines[0]["exc_info"]
    assert "Traceback (most recent call last)" in lines[0]["exc_info"]

    stream = io.StringIO()
    configure_logging(stream=stream, json=False)
    fail(logging.getLogger("test.redaction"))
    _assert_no_secret(stream.getvalue())
    assert "X-Amz-Signature=REDACTED answered 500" in stream.getvalue()


def test_the_stack_is_redacted() -> None:
    def emit(log: logging.Logger) -> None:
        record = log.makeRecord(log.name, logging.WARNING, __file__, 1, "here", None, None)
        record.stack_info = f'Stack (most recent call last):\n  File "x.py", line 1\n    fetch("{URL}")'
        log.handle(record)

    text, lines = _json_lines(emit)
    _assert_no_secret(text)
    assert 'fetch("https://b.s3.amazonaws.com/' in lines[0]["stack_info"]


def test_percent_encoded_urls_are_redacted() -> None:
    once = quote(URL, safe="")
    twice = quote(once, safe="")
    for encoded in (once, twice, f"https://proxy.example/?next={once}&x=1"):
        out = redact(encoded)
        _assert_no_secret(out)
        assert "REDACTED" in out
    assert redact(f"https://proxy.example/?next={once}&x=1").endswith("&x=1")
    assert "X-Amz-Expires%3D3600" in redact(once)


def test_a_message_that_is_not_a_string_is_redacted() -> None:
    text, lines = _json_lines(lambda log: log.warning(RuntimeError(URL)))
    _assert_no_secret(text)
    text, lines = _json_lines(lambda log: log.warning({"event": "sent", "urls": [URL]}))
    _assert_no_secret(text)
    assert lines[0]["event"] == "sent"
