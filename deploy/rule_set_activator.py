"""CloudFormation custom resource: make the stack's SES receipt rule set the active one.

CloudFormation creates receipt rule sets but cannot activate one, and a region has at most one
active set, so activating ours may switch off someone else's inbound mail:
- Create, Update: activate RuleSetName. If another set is active, refuse unless AllowReplace is
  "true" (an update that renames our own set may replace the previous name).
- Delete: deactivate, but only if our set is still the active one.
Every request is answered: a custom resource that never answers stalls the stack for an hour.

This file is the Lambda's inline code in deploy/pipeline.yaml, byte for byte (tests/deploy checks;
`python deploy/sync_inline.py` copies it there). Standard library and boto3 only: the Lambda
Python runtime provides both.
"""

import json
import logging
import urllib.request

import boto3

logger = logging.getLogger("rule_set_activator")
logger.setLevel(logging.INFO)

MAX_REASON_CHARS = 1000  # the whole response must stay under 4 KiB


def handler(event, context):
    logger.info("request %s for %s", event.get("RequestType"), event.get("LogicalResourceId"))
    fallback_id = event.get("PhysicalResourceId") or event["ResourceProperties"].get("RuleSetName", "none")
    try:
        physical_id, data = apply(event, boto3.client("ses"))
    except Exception as error:
        logger.exception("failed")
        respond(event, "FAILED", fallback_id, reason=f"{type(error).__name__}: {error}")
        return
    respond(event, "SUCCESS", physical_id, data=data)


def apply(event, ses):
    """Do what the request asks; returns the physical id and the attributes for Fn::GetAtt."""
    props = event["ResourceProperties"]
    name = props["RuleSetName"]
    active = active_rule_set(ses)
    if event["RequestType"] == "Delete":
        ours = event.get("PhysicalResourceId")
        if active is not None and active == ours:
            ses.set_active_receipt_rule_set()  # no name: no set is active
            logger.info("deactivated %s", ours)
        return ours, {}
    previous = event.get("OldResourceProperties", {}).get("RuleSetName")
    allow = str(props.get("AllowReplace", "false")).lower() == "true"
    if active not in (None, name, previous) and not allow:
        raise RuntimeError(
            f"receipt rule set {active!r} is already active in this region; "
            "set AllowReplaceActiveRuleSet=true to replace it"
        )
    if active != name:
        ses.set_active_receipt_rule_set(RuleSetName=name)
        logger.info("activated %s (was %s)", name, active)
    return name, {"RuleSetName": name, "PreviouslyActive": active or ""}


def active_rule_set(ses):
    metadata = ses.describe_active_receipt_rule_set().get("Metadata") or {}
    return metadata.get("Name")


def respond(event, status, physical_id, reason="", data=None):
    """PUT the result to the pre-signed ResponseURL, as the cfn-response module does."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:MAX_REASON_CHARS] or status,
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data or {},
        }
    ).encode()
    # The URL is signed without a content type: send an empty one, or S3 refuses the signature.
    request = urllib.request.Request(
        event["ResponseURL"],
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        logger.info("response %s: HTTP %s", status, response.status)
