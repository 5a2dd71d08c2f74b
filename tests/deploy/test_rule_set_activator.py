"""The custom resource that activates the receipt rule set (deploy/rule_set_activator.py), run
against the emulator's SES. Its answer goes where CloudFormation's would: an HTTP PUT to the
pre-signed ResponseURL, here a server on 127.0.0.1 that records it."""

from __future__ import annotations

import importlib.util
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.deploy.cfn import DEPLOY
from worker.local.emulator import Emulator


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rule_set_activator", DEPLOY / "rule_set_activator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


activator = _load()


class Responses:
    """What the handler PUT to its ResponseURL."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        recorded = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers["Content-Length"])
                recorded.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def last(self) -> dict[str, Any]:
        assert self.received, "the handler sent no response"
        return self.received[-1]


@pytest.fixture
def responses() -> Iterator[Responses]:
    server = Responses()
    yield server
    server.close()


@pytest.fixture
def ses(emulator: Emulator) -> Iterator[Any]:
    if emulator.kind == "localstack":
        pytest.skip("LocalStack Community has no SetActiveReceiptRuleSet or DescribeActiveReceiptRuleSet")
    client = boto3.client("ses")
    yield client
    client.set_active_receipt_rule_set()  # leave no set active for other tests


def rule_set(ses: Any) -> str:
    name = f"t{secrets.token_hex(4)}"
    ses.create_receipt_rule_set(RuleSetName=name)
    return name


def active(ses: Any) -> str | None:
    return (ses.describe_active_receipt_rule_set().get("Metadata") or {}).get("Name")


def event(responses: Responses, request: str, name: str, allow: str = "false", **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request,
        # Pre-signed S3 URLs carry their signature in the query string.
        "ResponseURL": f"{responses.url}/cfn-response?X-Amz-Signature=abc&X-Amz-Expires=7200",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/sensormail/0f1e",
        "RequestId": secrets.token_hex(8),
        "LogicalResourceId": "RuleSetActivation",
        "ResourceType": "Custom::ReceiptRuleSetActivation",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", "RuleSetName": name, "AllowReplace": allow},
        **extra,
    }


def run(e: dict[str, Any], responses: Responses) -> dict[str, Any]:
    activator.handler(e, object())
    answer = responses.last()
    assert answer["path"].startswith("/cfn-response?X-Amz-Signature=abc")
    assert answer["content_type"] == ""  # the URL was signed without one
    body = answer["body"]
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        assert body[key] == e[key]
    assert len(json.dumps(body)) < 4096
    return dict(body)


def test_create_activates_the_rule_set(ses: Any, responses: Responses) -> None:
    ses.set_active_receipt_rule_set()
    name = rule_set(ses)
    body = run(event(responses, "Create", name), responses)
    assert body["Status"] == "SUCCESS" and body["PhysicalResourceId"] == name
    assert body["Data"] == {"RuleSetName": name, "PreviouslyActive": ""}
    assert active(ses) == name


def test_create_refuses_to_replace_another_active_set(ses: Any, responses: Responses) -> None:
    theirs, ours = rule_set(ses), rule_set(ses)
    ses.set_active_receipt_rule_set(RuleSetName=theirs)
    body = run(event(responses, "Create", ours), responses)
    assert body["Status"] == "FAILED"
    assert theirs in body["Reason"] and "AllowReplaceActiveRuleSet" in body["Reason"]
    assert active(ses) == theirs
    # CloudFormation then deletes the failed resource: that must leave their set alone.
    body = run(event(responses, "Delete", ours, PhysicalResourceId=body["PhysicalResourceId"]), responses)
    assert body["Status"] == "SUCCESS" and active(ses) == theirs


def test_create_replaces_another_active_set_when_allowed(ses: Any, responses: Responses) -> None:
    theirs, ours = rule_set(ses), rule_set(ses)
    ses.set_active_receipt_rule_set(RuleSetName=theirs)
    body = run(event(responses, "Create", ours, allow="true"), responses)
    assert body["Status"] == "SUCCESS" and body["Data"]["PreviouslyActive"] == theirs
    assert active(ses) == ours


def test_delete_deactivates_our_set(ses: Any, responses: Responses) -> None:
    ours = rule_set(ses)
    ses.set_active_receipt_rule_set(RuleSetName=ours)
    body = run(event(responses, "Delete", ours, PhysicalResourceId=ours), responses)
    assert body["Status"] == "SUCCESS" and body["PhysicalResourceId"] == ours
    assert active(ses) is None


def test_delete_leaves_a_set_activated_since(ses: Any, responses: Responses) -> None:
    ours, later = rule_set(ses), rule_set(ses)
    ses.set_active_receipt_rule_set(RuleSetName=later)
    body = run(event(responses, "Delete", ours, PhysicalResourceId=ours), responses)
    assert body["Status"] == "SUCCESS" and active(ses) == later


def test_update_to_a_new_name_replaces_our_old_set(ses: Any, responses: Responses) -> None:
    old, new = rule_set(ses), rule_set(ses)
    ses.set_active_receipt_rule_set(RuleSetName=old)
    e = event(responses, "Update", new, PhysicalResourceId=old, OldResourceProperties={"RuleSetName": old})
    body = run(e, responses)
    assert body["Status"] == "SUCCESS" and body["PhysicalResourceId"] == new
    assert active(ses) == new
    # CloudFormation deletes the old physical resource after the update: the new set stays.
    run(event(responses, "Delete", old, PhysicalResourceId=old), responses)
    assert active(ses) == new


def test_update_keeps_an_active_set_active(ses: Any, responses: Responses) -> None:
    ours = rule_set(ses)
    ses.set_active_receipt_rule_set(RuleSetName=ours)
    e = event(responses, "Update", ours, PhysicalResourceId=ours, OldResourceProperties={"RuleSetName": ours})
    body = run(e, responses)
    assert body["Status"] == "SUCCESS" and active(ses) == ours


def test_an_error_is_answered_not_raised(ses: Any, responses: Responses) -> None:
    missing = f"missing{secrets.token_hex(4)}"
    body = run(event(responses, "Create", missing), responses)
    assert body["Status"] == "FAILED" and "RuleSetDoesNotExist" in body["Reason"]
    assert body["PhysicalResourceId"] == missing
