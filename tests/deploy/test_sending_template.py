"""deploy/sending.yaml: the device user can mail the intake and nothing else; the configuration set
publishes bounce, complaint, reject and delivery events; the reputation alarms sit below the levels
at which SES reviews an account.

The device policy's conditions are also evaluated here, by a small model of IAM's operators
(`ForAllValues:`/`ForAnyValue:` over the multi-valued `ses:Recipients`, `StringLike` patterns,
`Null`, explicit Deny winning), on the requests a leaked key could make.
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest

from tests.deploy import cfn

TEMPLATE = cfn.load("sending.yaml")
INTAKE = "intake-7f3k@sensors.example.com"
FROM_PATTERNS = ["*@devices.sensors.example.com"]
PARAMETERS = {"IntakeAddress": INTAKE, "DeviceFromAddresses": FROM_PATTERNS}


def statements() -> list[dict[str, Any]]:
    [policy] = cfn.props(TEMPLATE, "DeviceUser")["Policies"]
    return list(policy["PolicyDocument"]["Statement"])


def resolve(value: Any) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return PARAMETERS[value["Ref"]]
    if isinstance(value, list):
        return [item for v in value for item in (resolve(v) if isinstance(resolve(v), list) else [resolve(v)])]
    return value


def _test(operator: str, key_values: list[str] | None, wanted: list[str]) -> bool:
    """One condition operator against the request's values for one key (None: key absent)."""
    qualifier, _, op = operator.rpartition(":")
    if op == "Null":
        return (key_values is None) == (str(wanted[0]).lower() == "true")
    if key_values is None:
        return qualifier == "ForAllValues"  # vacuously true: why the policy adds "Null"
    def match(value: str) -> bool:
        if op == "StringEquals":
            return value in wanted
        if op == "StringNotEquals":
            return value not in wanted
        if op == "StringLike":
            return any(fnmatch.fnmatchcase(value, p) for p in wanted)
        raise AssertionError(f"operator not modelled: {operator}")

    if qualifier == "ForAllValues":
        return all(match(v) for v in key_values)
    if qualifier == "ForAnyValue":
        return any(match(v) for v in key_values)
    assert len(key_values) == 1, f"{operator} on a multi-valued key"
    return match(key_values[0])


def _applies(statement: dict[str, Any], action: str, request: dict[str, list[str] | None]) -> bool:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    if not any(fnmatch.fnmatchcase(action, a) for a in actions):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        for key, wanted in keys.items():
            wanted_list = resolve(wanted) if isinstance(resolve(wanted), list) else [resolve(wanted)]
            # IAM treats an empty multi-valued key as absent.
            if not _test(operator, request.get(key) or None, wanted_list):
                return False
    return True


def allowed(action: str, recipients: list[str] | None, sender: str = "pump7@devices.sensors.example.com") -> bool:
    request = {"ses:Recipients": recipients, "ses:FromAddress": [sender]}
    hits = [s for s in statements() if _applies(s, action, request)]
    return any(s["Effect"] == "Allow" for s in hits) and not any(s["Effect"] == "Deny" for s in hits)


def test_the_device_may_send_to_the_intake() -> None:
    assert allowed("ses:SendRawEmail", [INTAKE])


@pytest.mark.parametrize(
    "recipients",
    [
        ["victim@example.com"],
        [INTAKE, "victim@example.com"],  # a Bcc riding along with the intake
        [INTAKE.upper()],  # the comparison is exact: the template asks for the lower-case address
        [],
        None,
    ],
)
def test_a_leaked_key_cannot_mail_anyone_else(recipients: list[str] | None) -> None:
    assert not allowed("ses:SendRawEmail", recipients)


def test_only_the_device_from_addresses() -> None:
    assert not allowed("ses:SendRawEmail", [INTAKE], sender="ceo@sensors.example.com")
    assert not allowed("ses:SendRawEmail", [INTAKE], sender="pump7@devices.sensors.example.com.evil.test")


@pytest.mark.parametrize("action", ["ses:SendEmail", "ses:SendTemplatedEmail", "ses:SendBulkEmail", "ses:GetAccount"])
def test_no_other_action(action: str) -> None:
    assert not allowed(action, [INTAKE])


def test_the_policy_conditions_as_written() -> None:
    allow, deny = statements()
    assert allow["Effect"] == "Allow" and allow["Action"] == "ses:SendRawEmail"
    assert allow["Condition"] == {
        "ForAllValues:StringEquals": {"ses:Recipients": [{"Ref": "IntakeAddress"}]},
        "Null": {"ses:Recipients": "false"},
        "StringLike": {"ses:FromAddress": {"Ref": "DeviceFromAddresses"}},
    }
    assert "${AWS::AccountId}" in allow["Resource"]["Fn::Sub"]  # this account's identities only
    assert deny["Effect"] == "Deny" and deny["Action"] == "ses:Send*" and deny["Resource"] == "*"
    assert deny["Condition"] == {"ForAnyValue:StringNotEquals": {"ses:Recipients": [{"Ref": "IntakeAddress"}]}}


def test_the_intake_address_is_secret_and_lower_case() -> None:
    parameter = TEMPLATE["Parameters"]["IntakeAddress"]
    assert parameter["NoEcho"] is True
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.match(INTAKE) and not pattern.match(INTAKE.upper())


def test_the_key_is_kept_in_secrets_manager_and_never_output() -> None:
    key = cfn.props(TEMPLATE, "DeviceKey")
    assert key["UserName"] == {"Ref": "DeviceUser"} and key["Serial"] == {"Ref": "KeySerial"}
    secret = cfn.props(TEMPLATE, "DeviceCredentials")["SecretString"]["Fn::Sub"]
    assert "${DeviceKey.SecretAccessKey}" in secret
    # The secret is the JSON `sensormail smtp-credentials --secret-id` reads.
    filled = re.sub(r"\$\{[^}]+\}", "x", secret)
    assert set(json.loads(filled)) >= {"access_key_id", "secret_access_key", "region", "intake"}
    assert "DeviceKey" not in cfn.references(TEMPLATE["Outputs"])


def test_configuration_set_publishes_the_events_to_cloudwatch() -> None:
    assert TEMPLATE["Resources"]["ConfigurationSet"]["Condition"] == "CreateSending"
    config_set = cfn.props(TEMPLATE, "ConfigurationSet")
    assert config_set["Name"] == {"Ref": "ConfigurationSetName"}
    assert config_set["ReputationOptions"] == {"ReputationMetricsEnabled": True}
    assert "SendingOptions" not in config_set  # the kill switch owns it; a stack update must not undo a pause
    events = cfn.props(TEMPLATE, "ConfigurationSetEvents")
    assert events["ConfigurationSetName"] == {"Ref": "ConfigurationSet"}
    destination = events["EventDestination"]
    assert destination["Enabled"] is True
    assert {"bounce", "complaint", "reject", "delivery"} <= set(destination["MatchingEventTypes"])
    [dimension] = destination["CloudWatchDestination"]["DimensionConfigurations"]
    assert dimension["DimensionName"] == "ses:configuration-set" and dimension["DimensionValueSource"] == "messageTag"


@pytest.mark.parametrize(
    ("alarm", "metric", "parameter", "ses_reviews_at"),
    [
        ("BounceRateAlarm", "Reputation.BounceRate", "BounceRateAlarmThreshold", 0.05),
        ("ComplaintRateAlarm", "Reputation.ComplaintRate", "ComplaintRateAlarmThreshold", 0.001),
    ],
)
def test_reputation_alarms_fire_well_before_ses_reviews_the_account(
    alarm: str, metric: str, parameter: str, ses_reviews_at: float
) -> None:
    props = cfn.props(TEMPLATE, alarm)
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SES", metric)
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["Threshold"] == {"Ref": parameter}
    spec = TEMPLATE["Parameters"][parameter]
    assert float(spec["Default"]) <= 0.8 * ses_reviews_at and float(spec["MaxValue"]) <= ses_reviews_at
    assert props["AlarmActions"] == [{"Ref": "AlarmsTopicArn"}] == props["OKActions"]


def test_dashboard_shows_the_event_metrics_and_the_reputation() -> None:
    body, names = cfn.props(TEMPLATE, "SendingDashboard")["DashboardBody"]["Fn::Sub"]
    assert names == {"SetName": {"Ref": "ConfigurationSet"}}
    filled = re.sub(r"\$\{(BounceRateAlarmThreshold|ComplaintRateAlarmThreshold)\}", "0.01", body)
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "x", filled))
    metrics = {m[1] for w in dashboard["widgets"] for m in w["properties"]["metrics"]}
    assert {"Send", "Delivery", "Bounce", "Complaint", "Reject", "Reputation.BounceRate", "Reputation.ComplaintRate"} <= metrics


def test_every_sending_resource_is_conditional_and_the_device_user_is_not() -> None:
    resources = TEMPLATE["Resources"]
    for name in ("ConfigurationSet", "ConfigurationSetEvents", "BounceRateAlarm", "ComplaintRateAlarm", "SendingDashboard"):
        assert resources[name]["Condition"] == "CreateSending", name
    for name in ("DeviceUser", "DeviceKey", "DeviceCredentials"):
        assert "Condition" not in resources[name], name


# ---------------------------------------------------------------- the device domain (issue 13)

def test_the_device_domain_gets_easy_dkim_and_a_custom_mail_from_domain() -> None:
    """Without them SES SMTP mail arrives signed by amazonses.com only, from a bounce address at
    amazonses.com: nothing aligned with the device's From, and the worker quarantines it."""
    identity = TEMPLATE["Resources"]["DeviceIdentity"]
    assert identity["Condition"] == "HasDeviceDomain"
    p = identity["Properties"]
    assert p["EmailIdentity"] == {"Ref": "DeviceDomain"}
    assert p["DkimAttributes"] == {"SigningEnabled": True}
    assert p["DkimSigningAttributes"] == {"NextSigningKeyLength": "RSA_2048_BIT"}
    assert p["MailFromAttributes"] == {"MailFromDomain": {"Fn::Sub": "${DeviceMailFromSubdomain}.${DeviceDomain}"},
                                       "BehaviorOnMxFailure": "REJECT_MESSAGE"}


def test_the_device_domain_records_make_spf_and_dkim_pass_aligned() -> None:
    group = TEMPLATE["Resources"]["DeviceDomainRecords"]
    assert group["Condition"] == "PublishDeviceRecords"
    records = group["Properties"]["RecordSets"]
    cnames = [r for r in records if r["Type"] == "CNAME"]
    assert [r["Name"] for r in cnames] == [{"Fn::GetAtt": ["DeviceIdentity", f"DkimDNSTokenName{n}"]} for n in (1, 2, 3)]
    mail_from = {"Fn::Sub": "${DeviceMailFromSubdomain}.${DeviceDomain}"}
    [mx] = [r for r in records if r["Type"] == "MX"]
    assert mx["Name"] == mail_from and mx["ResourceRecords"] == [{"Fn::Sub": "10 feedback-smtp.${AWS::Region}.amazonses.com"}]
    spf, dmarc = [r for r in records if r["Type"] == "TXT"]
    assert spf["Name"] == mail_from and spf["ResourceRecords"] == ['"v=spf1 include:amazonses.com -all"']
    assert dmarc["Name"] == {"Fn::Sub": "_dmarc.${DeviceDomain}"} and "v=DMARC1" in dmarc["ResourceRecords"][0]


def test_the_mail_from_domain_aligns_with_the_device_domain() -> None:
    """What the worker checks (worker/mail/policy.py), with the template's default subdomain."""
    from worker.mail.policy import aligned

    subdomain = cfn.default(TEMPLATE, "DeviceMailFromSubdomain")
    assert aligned(f"{subdomain}.devices.example.com", "devices.example.com")


def test_the_configuration_set_delivers_only_over_tls() -> None:
    """Links are credentials: SES must not hand the email to a recipient's server in plain text
    (TlsPolicy OPTIONAL, the default, falls back to it when STARTTLS fails)."""
    options = cfn.props(TEMPLATE, "ConfigurationSet")["DeliveryOptions"]
    assert options == {"TlsPolicy": "REQUIRE"}
