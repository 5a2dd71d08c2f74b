from __future__ import annotations

import io
import json
import logging

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
