"""SES inbound: is the active receipt rule set the one holding our rule, and is the rule right?

The rule is read once (`locate_rule`, I/O) and judged by `check_rule` (pure). "Our rule" is the one
whose recipients include the intake address; with no intake known, the one storing into the
incoming bucket; with neither, the first rule with an S3 action.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from worker.ops.doctor.report import Check, fail, ok, unknown
from worker.ops.doctor.target import Target

TITLE = "receipt rule"


@dataclass(slots=True)
class RuleLookup:
    active: str | None = None  # the active rule set's name
    sets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # every rule set -> its rules


async def locate_rule(ses: Any, target: Target) -> RuleLookup:
    lookup = RuleLookup()
    active = await ses.describe_active_receipt_rule_set()
    if active.get("Metadata"):
        lookup.active = str(active["Metadata"]["Name"])
        lookup.sets[lookup.active] = list(active.get("Rules", []))
    for meta in (await ses.list_receipt_rule_sets()).get("RuleSets", []):
        name = str(meta["Name"])
        if name not in lookup.sets:
            lookup.sets[name] = list((await ses.describe_receipt_rule_set(RuleSetName=name)).get("Rules", []))
    return lookup


def s3_action(rule: dict[str, Any]) -> dict[str, Any] | None:
    for action in rule.get("Actions", []):
        if "S3Action" in action:
            return dict(action["S3Action"])
    return None


def is_ours(rule: dict[str, Any], target: Target) -> bool:
    action = s3_action(rule)
    if target.intake:
        intake = target.intake.lower()
        recipients = [r.lower() for r in rule.get("Recipients", [])]
        # A rule with no recipients matches every address; one naming the domain matches all of it.
        return action is not None and (not recipients or intake in recipients or intake.split("@")[-1] in recipients)
    if target.incoming_bucket:
        return action is not None and action.get("BucketName") == target.incoming_bucket
    return action is not None


def our_rule(lookup: RuleLookup, target: Target) -> tuple[str, dict[str, Any]] | None:
    """(rule set, rule), preferring the active set."""
    names = ([lookup.active] if lookup.active else []) + [n for n in lookup.sets if n != lookup.active]
    for name in names:
        for rule in lookup.sets[name]:
            if is_ours(rule, target):
                return name, rule
    return None


def learn_from_rule(lookup: RuleLookup, target: Target) -> str | None:
    """Fill the intake and mail domain from our rule; returns the bucket its S3 action writes to."""
    found = our_rule(lookup, target)
    if found is None:
        return None
    rule_set, rule = found
    addresses = [r for r in rule.get("Recipients", []) if "@" in r]
    if not target.intake and len(addresses) == 1:
        target.intake = addresses[0]
        target.note("intake", target.intake, f"receipt rule {rule_set}/{rule['Name']}")
    if not target.mail_domain and target.intake:
        target.mail_domain = target.intake.rsplit("@", 1)[-1].lower()
        target.note("mail_domain", target.mail_domain, "the intake address")
    action = s3_action(rule) or {}
    if action.get("ObjectKeyPrefix"):
        target.incoming_prefix = str(action["ObjectKeyPrefix"])
    bucket = action.get("BucketName")
    return str(bucket) if bucket else None


def rule_problems(rule: dict[str, Any], target: Target) -> list[str]:
    problems = []
    if not rule.get("Enabled", False):
        problems.append("the rule is disabled")
    if rule.get("TlsPolicy") != "Require":
        problems.append(f"TLS policy is {rule.get('TlsPolicy', 'Optional')}, not Require")
    if not rule.get("ScanEnabled", False):
        problems.append("spam and virus scanning is off")
    action = s3_action(rule) or {}
    if target.incoming_bucket and action.get("BucketName") != target.incoming_bucket:
        problems.append(f"the S3 action writes to {action.get('BucketName')}, not {target.incoming_bucket}")
    if action.get("ObjectKeyPrefix", "") != target.incoming_prefix:
        problems.append(f"the S3 action's prefix is {action.get('ObjectKeyPrefix', '')!r}, not {target.incoming_prefix!r}")
    return problems


def fixed_rule(rule: dict[str, Any], target: Target) -> dict[str, Any]:
    fixed = {k: v for k, v in rule.items() if k in ("Name", "Recipients", "Actions")}
    fixed |= {"Enabled": True, "TlsPolicy": "Require", "ScanEnabled": True}
    if target.incoming_bucket:
        fixed["Actions"] = [a for a in rule.get("Actions", []) if "S3Action" not in a] + [
            {"S3Action": {**(s3_action(rule) or {}), "BucketName": target.incoming_bucket,
                          "ObjectKeyPrefix": target.incoming_prefix}}]
    return fixed


def describe_rule(rule_set: str, rule: dict[str, Any]) -> str:
    action = s3_action(rule) or {}
    recipients = ", ".join(rule.get("Recipients", [])) or "every address"
    return (f"{rule_set}/{rule['Name']}: recipient {recipients}, S3 → {action.get('BucketName')}/"
            f"{action.get('ObjectKeyPrefix', '')}, TLS {rule.get('TlsPolicy', 'Optional')}, "
            f"scanning {'on' if rule.get('ScanEnabled') else 'off'}")


def check_rule(lookup: RuleLookup, target: Target) -> Check:
    found = our_rule(lookup, target)
    if found is None:
        if target.emulator and not lookup.sets:
            return unknown(TITLE, "the emulator has no receipt rule set: `sensormail local`'s SMTP stand-in "
                                  "stores mail in incoming/ as the rule would")
        who = target.intake or target.incoming_bucket or "the intake"
        return fail(TITLE, f"no rule for {who} in any rule set (active: {lookup.active or 'none'})",
                    "deploy the pipeline stack (docs/deploy.md, step 1): it creates the rule set and activates it")
    rule_set, rule = found
    if rule_set != lookup.active:
        replaces = f" (this switches off {lookup.active})" if lookup.active else ""
        return fail(TITLE, f"rule set {rule_set} holds our rule but is not active (active: {lookup.active or 'none'})",
                    f"aws ses set-active-receipt-rule-set --rule-set-name {rule_set}{replaces}")
    problems = rule_problems(rule, target)
    if problems:
        command = (f"aws ses update-receipt-rule --rule-set-name {rule_set} "
                   f"--rule '{json.dumps(fixed_rule(rule, target), separators=(',', ':'))}'")
        return fail(TITLE, f"{describe_rule(rule_set, rule)}: " + "; ".join(problems), command)
    return ok(TITLE, f"active, {describe_rule(rule_set, rule)}")
