"""deploy/pipeline.yaml read as data: what the mail pipeline depends on, checked statement by
statement (cfn-lint checks the syntax and the property names; these check the intent)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy import cfn
from worker.config import Settings
from worker.aws.revocation import REVOKED_PREFIX

T = cfn.load("pipeline.yaml")
DAY = 86400


def statements(policy_id: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in cfn.props(T, policy_id)["PolicyDocument"]["Statement"]}


def lifecycle(bucket: str) -> dict[str, dict[str, Any]]:
    return {r["Id"]: r for r in cfn.props(T, bucket)["LifecycleConfiguration"]["Rules"]}


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- storage

@pytest.mark.parametrize("bucket", ["IncomingBucket", "AttachmentsBucket", "AccessLogsBucket"])
def test_buckets_are_encrypted_private_and_owner_enforced(bucket: str) -> None:
    p = cfn.props(T, bucket)
    rules = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert p["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


@pytest.mark.parametrize(("bucket", "policy"), [("IncomingBucket", "IncomingBucketPolicy"), ("AttachmentsBucket", "AttachmentsBucketPolicy"),
                                                ("AccessLogsBucket", "AccessLogsBucketPolicy")])
def test_bucket_policies_refuse_plain_http(bucket: str, policy: str) -> None:
    assert cfn.props(T, policy)["Bucket"] == {"Ref": bucket}
    deny = statements(policy)["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Resource"] == [{"Fn::GetAtt": [bucket, "Arn"]}, {"Fn::Sub": f"${{{bucket}.Arn}}/*"}]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_object_expires_after_the_retention_parameter() -> None:
    assert cfn.default(T, "RetentionDays") == 14
    retention = {"Ref": "RetentionDays"}
    incoming = lifecycle("IncomingBucket")["expire-raw-emails"]
    assert "Prefix" not in incoming and incoming["ExpirationInDays"] == retention  # the whole bucket
    attachments = lifecycle("AttachmentsBucket")
    assert attachments["expire-attachments"]["Prefix"] == "attachments/"
    assert attachments["expire-state"]["Prefix"] == "state/"  # the idempotency records
    for rule in (attachments["expire-attachments"], attachments["expire-state"]):
        assert rule["ExpirationInDays"] == retention and rule["Status"] == "Enabled"
    # `sensormail revoke` keeps a revoked email's files under revoked/ for an investigation.
    revoked = attachments["expire-revoked"]
    assert revoked["Prefix"] == REVOKED_PREFIX and revoked["ExpirationInDays"] == {"Ref": "RevokedRetentionDays"}
    assert {r.get("Prefix") for r in attachments.values()} >= {Settings().attachments_prefix, Settings().state_prefix}


@pytest.mark.parametrize("bucket", ["IncomingBucket", "AttachmentsBucket", "AccessLogsBucket"])
def test_incomplete_uploads_and_old_versions_are_cleaned_up(bucket: str) -> None:
    rules = [r for r in lifecycle(bucket).values() if "Prefix" not in r and r["Status"] == "Enabled"]
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in rules)
    assert any(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == 1 for r in rules)


def test_every_request_to_the_attachments_bucket_is_logged_to_a_bucket_of_its_own() -> None:
    """Was a leaked link used? Server access logs say: key, requester, remote IP, HTTP status."""
    bucket = T["Resources"]["AttachmentsBucket"]
    logging = bucket["Properties"]["LoggingConfiguration"]
    assert logging["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}
    assert logging["LogFilePrefix"] == "attachments-bucket/"
    assert logging["TargetObjectKeyFormat"] == {"PartitionedPrefix": {"PartitionDateSource": "EventTime"}}
    assert bucket["DependsOn"] == "AccessLogsBucketPolicy"  # delivery is allowed before logging starts
    logs = T["Resources"]["AccessLogsBucket"]
    # Log delivery writes to SSE-S3 destinations (not SSE-KMS); the log outlives the stack.
    [rule] = logs["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert (logs["DeletionPolicy"], logs["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert "LoggingConfiguration" not in logs["Properties"]  # no log of the log


def test_access_logs_have_their_own_retention() -> None:
    assert cfn.default(T, "AccessLogRetentionDays") == 365
    assert cfn.default(T, "AccessLogRetentionDays") > cfn.default(T, "RetentionDays")
    expire = lifecycle("AccessLogsBucket")["expire-access-logs"]
    assert "Prefix" not in expire and expire["Status"] == "Enabled"
    assert expire["ExpirationInDays"] == {"Ref": "AccessLogRetentionDays"}


def test_only_s3_log_delivery_for_the_attachments_bucket_of_this_account_may_write_logs() -> None:
    allow = statements("AccessLogsBucketPolicy")["AllowServerAccessLogDelivery"]
    assert allow["Effect"] == "Allow" and allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert allow["Action"] == "s3:PutObject"
    prefix = cfn.props(T, "AttachmentsBucket")["LoggingConfiguration"]["LogFilePrefix"]
    assert allow["Resource"] == {"Fn::Sub": f"${{AccessLogsBucket.Arn}}/{prefix}*"}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    template, names = allow["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    # The attachments bucket's own name, built the same way (referring to it would be a cycle).
    assert template == "arn:${AWS::Partition}:s3:::" + cfn.props(T, "AttachmentsBucket")["BucketName"]["Fn::Sub"][0]
    assert names == cfn.props(T, "AttachmentsBucket")["BucketName"]["Fn::Sub"][1]
    assert not cfn.references(allow) & {"AttachmentsBucket"}


def test_revoked_files_outlive_the_raw_emails_they_stop_from_being_resent() -> None:
    """While an email's files are under revoked/, reprocessing it stores and sends nothing."""
    assert cfn.default(T, "RevokedRetentionDays") >= cfn.default(T, "RetentionDays")


def test_links_cannot_outlive_their_objects_with_the_defaults() -> None:
    assert cfn.default(T, "RetentionDays") * DAY > Settings().link_expiry_s
    assert cfn.default(T, "QueueRetentionSeconds") < cfn.default(T, "RetentionDays") * DAY


def test_ses_may_write_incoming_mail_for_this_account_and_rule_only() -> None:
    allow = statements("IncomingBucketPolicy")["AllowSesToStoreIncomingMail"]
    assert allow["Principal"] == {"Service": "ses.amazonaws.com"}
    assert allow["Action"] == "s3:PutObject"
    assert allow["Resource"] == {"Fn::Sub": "${IncomingBucket.Arn}/incoming/*"}
    condition = allow["Condition"]["StringEquals"]
    assert condition["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    rule = cfn.props(T, "ReceiptRule")["Rule"]["Name"]
    assert condition["aws:SourceArn"]["Fn::Sub"].endswith(f":receipt-rule-set/${{RuleSetName}}:receipt-rule/{rule}")
    # Built from names: referring to the rule resource would be a circular dependency.
    assert not cfn.references(allow) & {"ReceiptRule", "ReceiptRuleSet"}


def test_receipt_rule_requires_tls_scans_and_stores_under_incoming() -> None:
    rule = T["Resources"]["ReceiptRule"]
    # SES test-writes to the bucket when the rule is created: the policy must exist first.
    assert rule["DependsOn"] == "IncomingBucketPolicy"
    r = rule["Properties"]["Rule"]
    assert r["Enabled"] is True and r["TlsPolicy"] == "Require" and r["ScanEnabled"] is True
    assert r["Recipients"] == [{"Ref": "RecipientAddress"}]
    assert T["Parameters"]["RecipientAddress"]["NoEcho"] is True
    assert r["Actions"] == [{"S3Action": {"BucketName": {"Ref": "IncomingBucket"}, "ObjectKeyPrefix": "incoming/"}}]
    assert rule["Properties"]["RuleSetName"] == {"Ref": "ReceiptRuleSet"}


def test_new_objects_under_incoming_notify_the_queue() -> None:
    bucket = T["Resources"]["IncomingBucket"]
    # S3 checks it may send to the queue when the notification is set: the policy must exist first.
    assert bucket["DependsOn"] == "IncomingQueuePolicy"
    [config] = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Queue"] == {"Fn::GetAtt": ["IncomingQueue", "Arn"]}
    assert config["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]


def test_only_the_incoming_bucket_may_send_to_the_queue() -> None:
    policy = cfn.props(T, "IncomingQueuePolicy")
    assert policy["Queues"] == [{"Ref": "IncomingQueue"}]
    [allow] = policy["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # The same name the bucket is given, spelled out (the bucket depends on this policy).
    source = allow["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    name = cfn.props(T, "IncomingBucket")["BucketName"]["Fn::Sub"]
    assert source[0] == "arn:${AWS::Partition}:s3:::" + name[0]
    assert source[1] == name[1]


# ---------------------------------------------------------------- queues

def test_failed_messages_move_to_the_dlq() -> None:
    queue = cfn.props(T, "IncomingQueue")
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    assert cfn.default(T, "MaxReceiveCount") >= 5


def test_queues_keep_messages_for_days_encrypted() -> None:
    incoming, dlq = cfn.props(T, "IncomingQueue"), cfn.props(T, "DeadLetterQueue")
    assert incoming["MessageRetentionPeriod"] == {"Ref": "QueueRetentionSeconds"}
    parameter = T["Parameters"]["QueueRetentionSeconds"]
    assert parameter["MinValue"] >= DAY and parameter["Default"] >= 4 * DAY
    # A redriven message keeps its first enqueue time: the DLQ keeps the SQS maximum.
    assert dlq["MessageRetentionPeriod"] == 14 * DAY >= parameter["MaxValue"]
    assert incoming["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True


def test_visibility_matches_the_worker_heartbeat() -> None:
    queue = cfn.props(T, "IncomingQueue")
    assert queue["VisibilityTimeout"] == {"Ref": "VisibilitySeconds"}
    assert cfn.default(T, "VisibilitySeconds") == Settings().visibility_timeout_s
    # The same parameter reaches the worker as SENSORMAIL_VISIBILITY_SECONDS (service.yaml imports it).
    assert T["Outputs"]["VisibilitySeconds"]["Value"] == {"Ref": "VisibilitySeconds"}
    assert queue["ReceiveMessageWaitTimeSeconds"] == Settings().wait_time_s


# ---------------------------------------------------------------- topics and alarms

@pytest.mark.parametrize(("topic", "subscription", "parameter"), [
    ("FallbackTopic", "FallbackEmailSubscription", "FallbackEmail"),
    ("AlarmsTopic", "AlarmEmailSubscription", "AlarmEmail"),
])
def test_topics_with_optional_email_subscriptions(topic: str, subscription: str, parameter: str) -> None:
    assert T["Resources"][topic]["Type"] == "AWS::SNS::Topic"
    sub = T["Resources"][subscription]
    assert sub["Properties"] == {"TopicArn": {"Ref": topic}, "Protocol": "email", "Endpoint": {"Ref": parameter}}
    assert cfn.default(T, parameter) == ""
    assert T["Conditions"][sub["Condition"]] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}


def alarm(name: str) -> dict[str, Any]:
    p = cfn.props(T, name)
    assert p["AlarmActions"] == [{"Ref": "AlarmsTopic"}] and p["OKActions"] == [{"Ref": "AlarmsTopic"}]
    return p


def threshold(p: dict[str, Any]) -> Any:
    value = p["Threshold"]
    return cfn.default(T, value["Ref"]) if isinstance(value, dict) else value


def test_alarm_when_the_dlq_holds_50_or_more() -> None:
    p = alarm("DeadLetterAlarm")
    assert (p["Namespace"], p["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert p["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and threshold(p) == 50


def test_alarm_when_the_oldest_message_is_older_than_3_minutes() -> None:
    p = alarm("OldestMessageAlarm")
    assert (p["Namespace"], p["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert p["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["IncomingQueue", "QueueName"]}}]
    assert p["ComparisonOperator"] == "GreaterThanThreshold" and threshold(p) == 180
    assert p["Statistic"] == "Maximum" and p["Period"] * p["EvaluationPeriods"] <= 60


def test_alarm_when_more_than_180_wait_for_5_minutes() -> None:
    p = alarm("BacklogAlarm")
    assert (p["Namespace"], p["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert p["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["IncomingQueue", "QueueName"]}}]
    assert p["ComparisonOperator"] == "GreaterThanThreshold" and threshold(p) == 180
    assert p["Period"] * p["EvaluationPeriods"] == 300 and p["DatapointsToAlarm"] == p["EvaluationPeriods"]
    assert p["Statistic"] == "Minimum"  # above the threshold throughout each minute


def test_queue_alarms_stay_quiet_without_data() -> None:
    for name in ("DeadLetterAlarm", "OldestMessageAlarm", "BacklogAlarm"):
        assert cfn.props(T, name)["TreatMissingData"] == "notBreaching"


# ---------------------------------------------------------------- rule set activation

def test_the_rule_set_is_activated_after_its_rule() -> None:
    activation = T["Resources"]["RuleSetActivation"]
    assert activation["Type"].startswith("Custom::")
    assert activation["DependsOn"] == "ReceiptRule"
    p = activation["Properties"]
    assert p["ServiceToken"] == {"Fn::GetAtt": ["RuleSetActivatorFunction", "Arn"]}
    assert p["RuleSetName"] == {"Ref": "ReceiptRuleSet"}
    assert p["AllowReplace"] == {"Ref": "AllowReplaceActiveRuleSet"}
    assert cfn.default(T, "AllowReplaceActiveRuleSet") == "false"
    assert p["ServiceTimeout"] <= 600  # a silent handler fails the stack in minutes, not an hour


def test_the_activator_may_only_switch_rule_sets_and_log() -> None:
    [policy] = cfn.props(T, "RuleSetActivatorRole")["Policies"]
    granted = {(tuple(s["Action"]), str(s["Resource"])) for s in policy["PolicyDocument"]["Statement"]}
    assert granted == {
        (("ses:DescribeActiveReceiptRuleSet", "ses:SetActiveReceiptRuleSet"), "*"),
        (("logs:CreateLogStream", "logs:PutLogEvents"), str({"Fn::Sub": (
            "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${RuleSetActivatorLogGroup}:*")})),
    }


def test_the_inline_handler_is_the_tested_file() -> None:
    sync = load_module(cfn.DEPLOY / "sync_inline.py")
    text = (cfn.DEPLOY / "pipeline.yaml").read_text()
    assert sync.render(text, (cfn.DEPLOY / "rule_set_activator.py").read_text()) == text, (
        "deploy/pipeline.yaml's ZipFile differs from deploy/rule_set_activator.py: "
        "run python deploy/sync_inline.py"
    )
    code = cfn.props(T, "RuleSetActivatorFunction")["Code"]["ZipFile"]
    assert code == (cfn.DEPLOY / "rule_set_activator.py").read_text()
    assert cfn.props(T, "RuleSetActivatorFunction")["Handler"] == "index.handler"


# ---------------------------------------------------------------- what the service stack imports

def test_every_import_of_the_service_stack_is_exported_here() -> None:
    exported = {o["Export"]["Name"]["Fn::Sub"] for o in T["Outputs"].values() if "Export" in o}
    wanted = {name.replace("${PipelineStackName}", "${AWS::StackName}") for name in cfn.imports(cfn.load("service.yaml"))}
    assert wanted and wanted <= exported
