"""The doctor's report: pure values in, lines and JSON out; the exit code's rule."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from worker.ops.doctor.report import Status, as_json, brief, exit_code, fail, in_area, lines, ok, summary, unknown
from worker.ops.doctor.ses_rules import RuleLookup, check_rule
from worker.ops.doctor.target import Target, notifies_queue, queue_url_of

CHECKS = in_area("SES", [ok("sender identity", "a@x.com verified"),
                         fail("receipt rule", "rule set rs not active", "aws ses set-active-receipt-rule-set --rule-set-name rs")]) \
    + in_area("DNS", [unknown("MX", "skipped: emulator")])


def test_lines_group_by_area_and_put_the_fix_under_a_failure() -> None:
    assert lines(CHECKS) == [
        "SES",
        "  ✓ sender identity: a@x.com verified",
        "  ✗ receipt rule: rule set rs not active",
        "      fix: aws ses set-active-receipt-rule-set --rule-set-name rs",
        "",
        "DNS",
        "  ? MX: skipped: emulator",
    ]
    assert summary(CHECKS).startswith("needs attention: 1 ✓, 1 ✗, 1 ?")


def test_exit_code_fails_on_a_cross_or_on_an_unanswered_needed_check() -> None:
    assert exit_code(CHECKS) == 1
    assert exit_code([CHECKS[0], CHECKS[2]]) == 0  # an informational ? does not fail the run
    assert exit_code([CHECKS[0], unknown("sender identity", "no sender", needed=True)]) == 1


def test_json_is_one_document() -> None:
    document = json.loads(as_json(CHECKS, {"queue_url": "q"}))
    assert document["ok"] is False and document["exit_code"] == 1 and document["found"] == {"queue_url": "q"}
    assert document["checks"][1] == {"status": "fail", "title": "receipt rule", "saw": "rule set rs not active",
                                     "fix": "aws ses set-active-receipt-rule-set --rule-set-name rs",
                                     "needed": True, "area": "SES"}
    assert Status.UNKNOWN.mark == "?"


def test_brief_keeps_an_emulators_html_404_to_one_line() -> None:
    error = ClientError({"Error": {"Code": "404", "Message": "<!doctype html>\n<html lang=en>\n<title>404</title>"}},
                        "GetAccount")
    assert brief(error) == "GetAccount: 404: not supported here"


def test_the_rule_set_verdicts() -> None:
    target = Target(region="eu-west-1", queue_url="https://sqs/1/q", intake="in@mail.example.com",
                    incoming_bucket="inc")
    ours = {"Name": "r", "Enabled": True, "Recipients": ["in@mail.example.com"], "TlsPolicy": "Require",
            "ScanEnabled": True, "Actions": [{"S3Action": {"BucketName": "inc", "ObjectKeyPrefix": "incoming/"}}]}
    assert check_rule(RuleLookup("rs", {"rs": [ours]}), target).status is Status.OK
    other_active = check_rule(RuleLookup("legacy", {"legacy": [], "rs": [ours]}), target)
    assert other_active.fix == "aws ses set-active-receipt-rule-set --rule-set-name rs (this switches off legacy)"
    nowhere = check_rule(RuleLookup(None, {}), target)
    assert nowhere.status is Status.FAIL and nowhere.saw == "no rule for in@mail.example.com in any rule set (active: none)"
    emulator = Target(region="us-east-1", queue_url="http://127.0.0.1:1/1/q", emulator=True)
    assert check_rule(RuleLookup(None, {}), emulator).status is Status.UNKNOWN


def test_notification_matching() -> None:
    entry = {"QueueArn": "arn:q", "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "incoming/"}]}}}
    assert notifies_queue({"QueueConfigurations": [entry]}, "arn:q", "incoming/") == entry
    assert notifies_queue({"QueueConfigurations": [entry]}, "arn:other", "incoming/") is None
    assert notifies_queue({"QueueConfigurations": [{**entry, "Events": ["s3:ObjectRemoved:*"]}]}, "arn:q", "incoming/") is None
    wrong_prefix = {**entry, "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "other/"}]}}}
    assert notifies_queue({"QueueConfigurations": [wrong_prefix]}, "arn:q", "incoming/") is None


def test_queue_url_of_keeps_the_endpoint() -> None:
    assert queue_url_of("arn:aws:sqs:eu-west-1:123456789012:dlq", "http://127.0.0.1:5000/123456789012/q") == \
        "http://127.0.0.1:5000/123456789012/dlq"
    assert queue_url_of("arn:aws:sqs:eu-west-1:123:dlq", "https://sqs.eu-west-1.amazonaws.com/123/q") == \
        "https://sqs.eu-west-1.amazonaws.com/123/dlq"
