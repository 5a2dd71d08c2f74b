"""deploy/service.yaml read as data: shutdown timing, the worker's environment, least privilege,
the service's deployment settings and the autoscaling policies."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from tests.deploy import cfn
from worker.aws.signing import parse_signer_secret
from worker.config import Settings
from worker.pipeline import OutcomeKind

T = cfn.load("service.yaml")
ROOT = Path(__file__).resolve().parents[2]
# After the drain deadline the consumer hands unfinished messages back, shielded, for up to 5 s
# (worker/queue/consumer.py), then the process exits.
HAND_BACK_S = 5
FARGATE_MAX_STOP_TIMEOUT_S = 120


def container() -> dict[str, Any]:
    [worker] = cfn.props(T, "TaskDefinition")["ContainerDefinitions"]
    assert worker["Name"] == "worker"
    return dict(worker)


def environment() -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container()["Environment"]}


def policy(role: str) -> dict[str, dict[str, Any]]:
    """Statements by Sid; a statement under `Fn::If [condition, statement, AWS::NoValue]` gets
    the condition's name as "If"."""
    [p] = cfn.props(T, role)["Policies"]
    found = {}
    for s in p["PolicyDocument"]["Statement"]:
        if "Fn::If" in s:
            condition, s, otherwise = s["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
            s = {**s, "If": condition}
        found[s["Sid"]] = s
    return found


def imported(name: str) -> dict[str, Any]:
    return {"Fn::ImportValue": {"Fn::Sub": f"${{PipelineStackName}}-{name}"}}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- shutdown

def test_drain_default_is_the_workers() -> None:
    assert int(cfn.default(T, "DrainSeconds")) == Settings().drain_timeout_s == 25
    assert environment()["SENSORMAIL_DRAIN_SECONDS"] == {"Ref": "DrainSeconds"}


@pytest.mark.parametrize("drain", T["Parameters"]["DrainSeconds"]["AllowedValues"])
def test_stop_timeout_leaves_time_to_drain_and_hand_back(drain: str) -> None:
    assert container()["StopTimeout"] == {"Fn::FindInMap": ["Drain", {"Ref": "DrainSeconds"}, "StopTimeout"]}
    stop = T["Mappings"]["Drain"][drain]["StopTimeout"]
    assert int(drain) + HAND_BACK_S < stop <= FARGATE_MAX_STOP_TIMEOUT_S


def test_every_allowed_drain_has_a_stop_timeout() -> None:
    assert set(T["Mappings"]["Drain"]) == set(T["Parameters"]["DrainSeconds"]["AllowedValues"])


# ---------------------------------------------------------------- the worker's environment

def test_the_task_sets_the_settings_the_worker_needs() -> None:
    env = environment()
    assert env["SENSORMAIL_QUEUE_URL"] == imported("QueueUrl")
    assert env["SENSORMAIL_DLQ_URL"] == imported("DlqUrl")
    assert env["SENSORMAIL_ATTACHMENTS_BUCKET"] == imported("AttachmentsBucket")
    assert env["SENSORMAIL_FALLBACK_TOPIC_ARN"] == imported("FallbackTopicArn")
    assert env["SENSORMAIL_VISIBILITY_SECONDS"] == imported("VisibilitySeconds")
    assert env["SENSORMAIL_SENDER"] == {"Ref": "SenderAddress"}
    assert env["SENSORMAIL_CONCURRENCY"] == {"Ref": "Concurrency"}
    assert env["SENSORMAIL_LINK_EXPIRY_SECONDS"] == {"Ref": "LinkExpirySeconds"}
    assert env["SENSORMAIL_CONFIGURATION_SET"] == {"Ref": "ConfigurationSetName"}
    assert env["SENSORMAIL_SIGNER_SECRET_ARN"] == {"Fn::If": ["UseSignerUser", {"Ref": "LinkSignerSecret"}, ""]}
    assert env["SENSORMAIL_ALLOWED_SENDERS"] == {"Ref": "AllowedSenders"}
    assert env["SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS"] == {"Ref": "AllowedRecipientDomains"}
    assert env["SENSORMAIL_MAX_SEND_RATE"] == {"Ref": "MaxSendRate"}
    assert env["SENSORMAIL_INTAKE_DOMAIN"] == imported("MailDomain")
    assert env["SENSORMAIL_MAX_RECIPIENTS"] == {"Ref": "MaxRecipients"}
    assert env["SENSORMAIL_SENDER_RATE"] == {"Ref": "SenderRate"}


def test_every_variable_is_one_the_worker_reads() -> None:
    known = set(re.findall(r'"(SENSORMAIL_[A-Z_]+)"', (ROOT / "worker" / "config.py").read_text()))
    assert set(environment()) - {"AWS_REGION"} <= known


def test_the_defaults_pass_the_workers_validation() -> None:
    placeholders = {
        "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
        "DlqUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq",
        "AttachmentsBucket": "sensormail-attachments-0123456789ab",
        "FallbackTopicArn": "arn:aws:sns:eu-west-1:123456789012:fallback",
        "VisibilitySeconds": str(cfn.default(cfn.load("pipeline.yaml"), "VisibilitySeconds")),
        "MailDomain": "sensors.example.com",
    }
    params = {"SenderAddress": "alerts@sensors.example.com", "AWS::Region": "eu-west-1",
              "AllowedRecipientDomains": "example.com,example.org"}
    secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:signer-AbCdEf"

    def resolve(value: Any) -> str:
        if isinstance(value, str):
            return value
        if "Fn::If" in value:  # the default: a dedicated signer
            assert value["Fn::If"][0] == "UseSignerUser" and cfn.default(T, "LinkSigner") == "dedicated-user"
            return secret
        if "Fn::ImportValue" in value:
            return placeholders[value["Fn::ImportValue"]["Fn::Sub"].removeprefix("${PipelineStackName}-")]
        ref = value["Ref"]
        return str(params[ref] if ref in params else cfn.default(T, ref))

    settings = Settings.from_env({name: resolve(value) for name, value in environment().items()})
    assert settings.drain_timeout_s == 25 and settings.visibility_timeout_s == 60
    assert settings.ses_api == "v2" and settings.configuration_set == "sensormail"
    assert settings.link_expiry_s <= cfn.default(cfn.load("pipeline.yaml"), "RetentionDays") * 86400
    assert settings.signer_secret_arn == secret
    assert settings.allowed_recipient_domains == ("example.com", "example.org")
    assert settings.intake_domains == ("sensors.example.com",)
    assert (settings.max_recipients, settings.sender_rate) == (50, 60)


# ---------------------------------------------------------------- least privilege

def test_task_role_grants_exactly_what_the_worker_does() -> None:
    got = {sid: (sorted(as_list(s["Action"])), s["Resource"]) for sid, s in policy("TaskRole").items()}

    def bucket_path(export: str, prefix: str) -> dict[str, Any]:
        return {"Fn::Sub": [f"arn:${{AWS::Partition}}:s3:::${{Bucket}}/{prefix}/*", {"Bucket": imported(export)}]}

    assert got.pop("ReadIncomingEmail") == (["s3:GetObject"], bucket_path("IncomingBucket", "incoming"))
    assert got.pop("StoreAttachments") == (
        ["s3:AbortMultipartUpload", "s3:PutObject"], bucket_path("AttachmentsBucket", "attachments"))
    assert got.pop("PresignedLinksReadAttachments") == (["s3:GetObject"], bucket_path("AttachmentsBucket", "attachments"))
    assert got.pop("SeeRevokedEmails") == (["s3:ListBucket"], {"Fn::Sub": [
        "arn:${AWS::Partition}:s3:::${Bucket}", {"Bucket": imported("AttachmentsBucket")}]})
    assert got.pop("IdempotencyRecords") == (["s3:GetObject", "s3:PutObject"], bucket_path("AttachmentsBucket", "state"))
    assert got.pop("ConsumeIncomingQueue") == (
        ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"], imported("QueueArn"))
    assert got.pop("DeadLetterPermanentFailures") == (["sqs:SendMessage"], imported("DlqArn"))
    assert got.pop("PublishFallbackNotices") == (["sns:Publish"], imported("FallbackTopicArn"))
    assert got.pop("ReadSendingQuotaAndSuppressions") == (
        ["ses:GetAccount", "ses:GetAccountSendingEnabled", "ses:GetSendQuota", "ses:GetSuppressedDestination"], "*")
    actions, resources = got.pop("SendAsTheSender")
    assert actions == ["ses:SendEmail", "ses:SendRawEmail"]
    assert got.pop("NeverMailTheIntake") == (["ses:SendEmail", "ses:SendRawEmail"], "*")
    assert got.pop("ReadLinkSignerKey") == (["secretsmanager:GetSecretValue"], {"Ref": "LinkSignerSecret"})
    assert policy("TaskRole")["ReadLinkSignerKey"]["If"] == "UseSignerUser"
    assert got == {}
    identity = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/"
    assert resources[0] == {"Fn::Sub": identity + "${SenderAddress}"}
    assert resources[1]["Fn::Sub"][0] == identity + "${Domain}"
    assert resources[2]["Fn::If"][0] == "HasConfigurationSet"


def test_bucket_prefixes_are_the_workers() -> None:
    statements = policy("TaskRole")
    for sid, prefix in (("StoreAttachments", Settings().attachments_prefix),
                        ("PresignedLinksReadAttachments", Settings().attachments_prefix),
                        ("IdempotencyRecords", Settings().state_prefix)):
        assert statements[sid]["Resource"]["Fn::Sub"][0].endswith("}/" + prefix + "*")


def test_the_task_sends_only_as_the_sender() -> None:
    send = policy("TaskRole")["SendAsTheSender"]
    assert send["Condition"]["StringEquals"] == {"ses:FromAddress": {"Ref": "SenderAddress"}}


# ---------------------------------------------------------------- closed by default (issue 13)

def evaluate(value: Any, params: dict[str, str]) -> Any:
    """The intrinsic functions the send conditions use, evaluated as CloudFormation would."""
    if isinstance(value, list):
        return [evaluate(v, params) for v in value]
    if not isinstance(value, dict):
        return value
    [(fn, arg)] = value.items()
    if fn == "Ref":
        return params[arg]
    if fn == "Fn::ImportValue":
        return params[evaluate(arg, params)]
    if fn == "Fn::Split":
        return evaluate(arg[1], params).split(arg[0])
    if fn == "Fn::Join":
        return arg[0].join(evaluate(arg[1], params))
    if fn == "Fn::Sub":
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], {k: evaluate(v, params) for k, v in arg[1].items()})
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(names.get(m.group(1), params.get(m.group(1), m.group(0)))), text)
    raise AssertionError(f"not modelled: {fn}")


def may_send(recipients: list[str], allowed: str, mail_domain: str = "sensors.example.com") -> bool:
    """IAM's verdict on a send by the task role, from the two SES statements' conditions."""
    params = {"AllowedRecipientDomains": allowed, "SenderAddress": "alerts@sensors.example.com",
              "PipelineStackName": "sensormail-pipeline", "sensormail-pipeline-MailDomain": mail_domain}
    statements = policy("TaskRole")
    allow = evaluate(statements["SendAsTheSender"]["Condition"]["ForAllValues:StringLike"]["ses:Recipients"], params)
    deny = evaluate(statements["NeverMailTheIntake"]["Condition"]["ForAnyValue:StringLike"]["ses:Recipients"], params)
    allowed_all = all(any(fnmatch.fnmatchcase(r, p) for p in allow) for r in recipients)
    denied_any = any(fnmatch.fnmatchcase(r, p) for r in recipients for p in deny)
    return allowed_all and not denied_any


def test_the_recipient_allowlist_is_required_and_never_empty() -> None:
    """It defaulted to empty (any domain): a stack could be an open relay without saying so."""
    parameter = T["Parameters"]["AllowedRecipientDomains"]
    assert "Default" not in parameter
    pattern = re.compile(parameter["AllowedPattern"])
    for good in ("example.com", "example.com,ops.example.org", "*"):
        assert pattern.fullmatch(good), good
    for bad in ("", " ", "example.com, example.org", "Example.com", "*,example.com", "example", "a.com,,b.com"):
        assert not pattern.fullmatch(bad), bad


def test_the_task_role_may_send_only_to_the_allowed_domains() -> None:
    """ses:Recipients (To, Cc and Bcc) checked by IAM: a bug in the worker cannot relay."""
    assert may_send(["ops@example.com", "x@eu.plant.example.org"], "example.com,example.org")
    assert not may_send(["ops@example.com", "victim@elsewhere.example"], "example.com,example.org")
    assert not may_send(["x@notexample.com"], "example.com")
    assert may_send(["anyone@anywhere.example"], "*")


def test_the_task_role_never_mails_the_intake_domain() -> None:
    assert not may_send(["intake-7f3k@sensors.example.com"], "*")
    assert not may_send(["ops@example.com", "x@eu.sensors.example.com"], "example.com,sensors.example.com")
    assert may_send(["ops@example.com"], "*")


def test_a_star_allowlist_is_announced_by_the_stack() -> None:
    assert T["Conditions"]["AnyRecipient"] == {"Fn::Equals": [{"Ref": "AllowedRecipientDomains"}, "*"]}
    warning = T["Outputs"]["Warning"]
    assert warning["Condition"] == "AnyRecipient" and "OPEN RELAY" in warning["Value"]


def test_the_recipient_cap_and_the_sender_budget_are_parameters() -> None:
    assert (cfn.default(T, "MaxRecipients"), T["Parameters"]["MaxRecipients"]["MaxValue"]) == (50, 1000)
    assert cfn.default(T, "SenderRate") == Settings().sender_rate == 60
    assert cfn.default(T, "MaxRecipients") == Settings().max_recipients


def test_the_link_signer_may_only_read_attachments() -> None:
    user = T["Resources"]["LinkSignerUser"]
    assert user["Condition"] == "UseSignerUser"
    assert T["Conditions"]["UseSignerUser"] == {"Fn::Equals": [{"Ref": "LinkSigner"}, "dedicated-user"]}
    [p] = user["Properties"]["Policies"]
    [statement] = p["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "s3:GetObject"
    assert statement["Resource"] == {"Fn::Sub": [
        "arn:${AWS::Partition}:s3:::${Bucket}/attachments/*", {"Bucket": imported("AttachmentsBucket")}]}
    assert "ManagedPolicyArns" not in user["Properties"] and "Groups" not in user["Properties"]


# What S3 puts in the request context of a GET (s3:authType, s3:signatureAge in milliseconds).
PRESIGNED_TODAY = {"s3:authType": "REST-QUERY-STRING", "s3:signatureAge": 3_600_000}
WEEK_MS = 7 * 24 * 3600 * 1000


def allows(statement: dict[str, Any], request: dict[str, Any]) -> bool:
    """The statement's conditions on one request, as IAM evaluates them (a missing key fails)."""
    for operator, tests in statement.get("Condition", {}).items():
        for key, wanted in tests.items():
            value = request.get(key)
            if value is None:
                return False
            if operator == "StringEquals" and value != wanted:
                return False
            if operator == "NumericLessThanEquals" and not float(value) <= float(wanted):
                return False
            if operator not in ("StringEquals", "NumericLessThanEquals"):
                raise AssertionError(f"operator not modelled: {operator}")
    return True


@pytest.mark.parametrize(("role", "sid"), [("LinkSignerUser", "SignedLinksReadAttachments"),
                                           ("TaskRole", "PresignedLinksReadAttachments")])
def test_the_signing_key_reads_attachments_only_through_links_at_most_seven_days_old(role: str, sid: str) -> None:
    """Leaked, the signer's long-term key is no general S3 credential: no GetObject with an
    Authorization header (the CLI, an SDK), no POST, no link older than S3's 7-day maximum."""
    statement = policy(role)[sid]
    assert statement["Action"] == "s3:GetObject"
    assert statement["Condition"] == {"StringEquals": {"s3:authType": "REST-QUERY-STRING"},
                                      "NumericLessThanEquals": {"s3:signatureAge": str(WEEK_MS)}}
    assert Settings().link_expiry_s * 1000 <= WEEK_MS
    assert allows(statement, PRESIGNED_TODAY)
    assert allows(statement, {**PRESIGNED_TODAY, "s3:signatureAge": WEEK_MS})
    assert not allows(statement, {**PRESIGNED_TODAY, "s3:signatureAge": WEEK_MS + 1})
    assert not allows(statement, {"s3:authType": "REST-HEADER", "s3:signatureAge": 0})  # aws s3 cp with the key
    assert not allows(statement, {"s3:authType": "POST", "s3:signatureAge": 0})
    assert not allows(statement, {"s3:authType": "REST-QUERY-STRING"})  # no age: SigV2, refused


def test_the_signer_may_not_list_the_bucket_so_a_revoked_link_says_403() -> None:
    """S3 answers a GET of a missing key with 404 only to whoever may list the bucket."""
    [p] = cfn.props(T, "LinkSignerUser")["Policies"]
    actions = {a for s in p["PolicyDocument"]["Statement"] for a in as_list(s["Action"])}
    assert actions == {"s3:GetObject"}
    listing = policy("TaskRole")["SeeRevokedEmails"]  # the task role lists revoked/ only
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "revoked/*"}}


# ---------------------------------------------------------------- transport

def test_sends_go_through_the_sending_stacks_configuration_set_unless_told_otherwise() -> None:
    """deploy/sending.yaml's set requires TLS; the service uses it by default, under the name that
    stack gives it, and an empty name is the one explicit way out."""
    sending = cfn.load("sending.yaml")
    assert cfn.default(T, "ConfigurationSetName") == cfn.default(sending, "ConfigurationSetName") == "sensormail"
    assert environment()["SENSORMAIL_CONFIGURATION_SET"] == {"Ref": "ConfigurationSetName"}
    assert T["Conditions"]["HasConfigurationSet"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ConfigurationSetName"}, ""]}]}
    assert re.fullmatch(T["Parameters"]["ConfigurationSetName"]["AllowedPattern"], "")  # the opt-out
    assert re.fullmatch(T["Parameters"]["ConfigurationSetName"]["AllowedPattern"], "sensormail")
    # SES authorises a send through a set against the set too: the task role names it.
    [*_, set_arn] = policy("TaskRole")["SendAsTheSender"]["Resource"]
    condition, arn, otherwise = set_arn["Fn::If"]
    assert (condition, otherwise) == ("HasConfigurationSet", {"Ref": "AWS::NoValue"})
    assert arn["Fn::Sub"].endswith(":configuration-set/${ConfigurationSetName}")


def test_the_signer_has_two_keys_and_the_secret_holds_the_active_one() -> None:
    for key in ("A", "B"):
        p = cfn.props(T, f"LinkSignerKey{key}")
        assert p == {"UserName": {"Ref": "LinkSignerUser"}, "Serial": {"Ref": f"LinkSignerKeySerial{key}"}}
        assert T["Resources"][f"LinkSignerKey{key}"]["Condition"] == "UseSignerUser"
    assert T["Conditions"]["SignWithKeyA"] == {"Fn::Equals": [{"Ref": "LinkSignerActiveKey"}, "A"]}
    condition, with_a, with_b = cfn.props(T, "LinkSignerSecret")["SecretString"]["Fn::If"]
    assert condition == "SignWithKeyA"
    for key, branch in (("A", with_a), ("B", with_b)):
        filled = (branch["Fn::Sub"].replace(f"${{LinkSignerKey{key}}}", "AKIAEXAMPLE")
                  .replace(f"${{LinkSignerKey{key}.SecretAccessKey}}", "s3cr3t/+"))
        # What worker/aws/signing.py's parse_signer_secret reads.
        assert parse_signer_secret(filled) == ("AKIAEXAMPLE", "s3cr3t/+")
        assert json.loads(filled) == {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t/+"}


def test_switching_the_signing_key_restarts_the_tasks() -> None:
    label = container()["DockerLabels"]["sensormail.signer-key"]
    assert label == {"Fn::If": ["UseSignerUser", {"Fn::If": [
        "SignWithKeyA", {"Ref": "LinkSignerKeyA"}, {"Ref": "LinkSignerKeyB"}]}, "task-role"]}


# SES's account-level reads have no resource type: IAM only accepts "*" for them.
ACCOUNT_LEVEL_READS = {"ses:GetAccount", "ses:GetAccountSendingEnabled", "ses:GetSendQuota", "ses:GetSuppressedDestination"}


def test_no_wildcards_in_the_task_role() -> None:
    """Every Allow names its resources; the one Deny (the intake domain) covers everything."""
    for sid, statement in policy("TaskRole").items():
        if statement["Effect"] == "Deny":
            assert sid == "NeverMailTheIntake" and statement["Resource"] == "*"
            continue
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, sid
        for resource in as_list(statement["Resource"]):
            assert resource != "*" or set(as_list(statement["Action"])) <= ACCOUNT_LEVEL_READS, sid


def test_execution_role_pulls_one_repository_and_writes_one_log_group() -> None:
    got = {sid: (sorted(as_list(s["Action"])), s["Resource"]) for sid, s in policy("ExecutionRole").items()}
    assert got == {
        "RegistryLogin": (["ecr:GetAuthorizationToken"], "*"),
        "PullWorkerImage": (
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            imported("RepositoryArn"),
        ),
        "WriteWorkerLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], {"Fn::Sub": (
            "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroup}:*")}),
    }


@pytest.mark.parametrize("role", ["TaskRole", "ExecutionRole"])
def test_roles_are_for_ecs_tasks_of_this_account(role: str) -> None:
    [trust] = cfn.props(T, role)["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_tasks_accept_no_connections() -> None:
    group = cfn.props(T, "TaskSecurityGroup")
    assert "SecurityGroupIngress" not in group
    assert [(e["FromPort"], e["ToPort"]) for e in group["SecurityGroupEgress"]] == [(443, 443)]


# ---------------------------------------------------------------- task and service

def test_fargate_task_sized_by_parameters() -> None:
    task = cfn.props(T, "TaskDefinition")
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    assert task["Cpu"] == {"Ref": "Cpu"} and task["Memory"] == {"Ref": "Memory"}
    assert task["RuntimePlatform"] == {"CpuArchitecture": {"Ref": "CpuArchitecture"}, "OperatingSystemFamily": "LINUX"}


def test_logs_go_to_a_log_group_with_retention() -> None:
    logs = container()["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs"
    assert logs["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    assert logs["Options"]["awslogs-stream-prefix"]
    assert cfn.props(T, "LogGroup")["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_container_health_check_and_read_only_root() -> None:
    worker = container()
    command = worker["HealthCheck"]["Command"]
    assert command[0] == "CMD"  # exec form: no shell needed in the image
    assert worker["ReadonlyRootFilesystem"] is True
    assert worker["MountPoints"] == [{"SourceVolume": "tmp", "ContainerPath": "/tmp"}]


def test_tmp_volume_is_declared_by_the_image_so_fargate_gives_it_the_images_owner() -> None:
    """A Fargate bind volume is empty, root-owned, 0755, unless the image declares its container
    path a VOLUME (then the image's directory, owner and mode, is copied in): the worker (uid
    10001) writes its health file under /tmp only thanks to the Dockerfile's declaration."""
    from worker.config import DEFAULT_HEALTH_FILE

    volumes = cfn.props(T, "TaskDefinition")["Volumes"]
    assert volumes == [{"Name": "tmp"}]  # a bind volume (no host path, no EFS, no Docker volume)
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    declared = {path for line in re.findall(r"^VOLUME (.+)$", dockerfile, re.MULTILINE)
                for path in (json.loads(line) if line.startswith("[") else line.split())}
    for mount in container()["MountPoints"]:
        assert mount["ContainerPath"] in declared, mount
    health_dir = str(Path(DEFAULT_HEALTH_FILE).parent)
    assert health_dir in {m["ContainerPath"] for m in container()["MountPoints"]}
    assert container()["HealthCheck"]["Command"][1:3] == ["sensormail", "health"]


def test_service_rolls_back_a_failing_deployment() -> None:
    service = cfn.props(T, "Service")
    breaker = service["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
    assert breaker == {"Enable": True, "Rollback": True}
    # Autoscaling owns the task count: a stack update must not reset it.
    assert "DesiredCount" not in service


def test_fargate_and_fargate_spot() -> None:
    cluster, service = cfn.props(T, "Cluster"), cfn.props(T, "Service")
    assert cluster["CapacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    for strategy in (cluster["DefaultCapacityProviderStrategy"], service["CapacityProviderStrategy"]):
        assert [s["CapacityProvider"] for s in strategy] == ["FARGATE", "FARGATE_SPOT"]
    assert "LaunchType" not in service
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]


# ---------------------------------------------------------------- autoscaling

def metrics(policy_id: str) -> dict[str, dict[str, Any]]:
    config = cfn.props(T, policy_id)["TargetTrackingScalingPolicyConfiguration"]
    return {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}


def test_scaling_bounds_are_parameters() -> None:
    target = cfn.props(T, "ScalableTarget")
    assert target["MinCapacity"] == {"Ref": "MinTasks"} and target["MaxCapacity"] == {"Ref": "MaxTasks"}
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert target["ResourceId"] == {"Fn::Sub": "service/${Cluster}/${Service.Name}"}
    assert 0 <= cfn.default(T, "MinTasks") <= cfn.default(T, "MaxTasks")
    assert T["Parameters"]["MinTasks"]["MinValue"] == 0


def test_target_tracking_on_backlog_per_task() -> None:
    m = metrics("BacklogScalingPolicy")
    visible = m["visible"]["MetricStat"]["Metric"]
    assert (visible["Namespace"], visible["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert visible["Dimensions"] == [{"Name": "QueueName", "Value": imported("QueueName")}]
    running = m["running"]["MetricStat"]["Metric"]
    assert (running["Namespace"], running["MetricName"]) == ("ECS/ContainerInsights", "RunningTaskCount")
    assert m["backlog_per_task"]["Expression"] == "visible / running"
    assert [k for k, v in m.items() if v["ReturnData"]] == ["backlog_seconds"]


def test_the_target_is_derived_from_latency_and_time_per_email() -> None:
    config = cfn.props(T, "BacklogScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == {"Ref": "AcceptableLatencySeconds"}
    latency = cfn.default(T, "AcceptableLatencySeconds")
    per_email = cfn.default(T, "SecondsPerEmail")
    concurrency = cfn.default(T, "Concurrency")
    expression = metrics("BacklogScalingPolicy")["backlog_seconds"]["Expression"]["Fn::Sub"]
    formula = expression.replace("${SecondsPerEmail}", str(per_email)).replace("${Concurrency}", str(concurrency))
    # At the backlog per task of latency x concurrency / seconds per email, the metric is on target.
    backlog_per_task = latency * concurrency / per_email
    assert backlog_per_task == 120
    assert eval(formula, {}, {"backlog_per_task": backlog_per_task}) == pytest.approx(latency)  # noqa: S307


def test_a_step_policy_starts_the_first_task() -> None:
    step = cfn.props(T, "ScaleOutFromZeroPolicy")
    assert step["PolicyType"] == "StepScaling" and step["ScalingTargetId"] == {"Ref": "ScalableTarget"}
    config = step["StepScalingPolicyConfiguration"]
    assert config["AdjustmentType"] == "ExactCapacity"
    assert config["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    alarm = cfn.props(T, "ScaleOutFromZeroAlarm")
    assert alarm["AlarmActions"] == [{"Ref": "ScaleOutFromZeroPolicy"}]
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["Threshold"] == 1
    by_id = {m["Id"]: m for m in alarm["Metrics"]}
    assert by_id["waiting_with_no_task"]["Expression"] == "IF(FILL(running, 0) == 0, visible, 0)"
    assert by_id["running"]["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    assert by_id["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"


# ---------------------------------------------------------------- worker alarm and dashboard

def test_alarm_on_emails_the_worker_failed() -> None:
    p = cfn.props(T, "WorkerErrorAlarm")
    assert (p["Namespace"], p["MetricName"]) == ("Sensormail", "EmailsProcessed")
    assert p["Dimensions"] == [{"Name": "Outcome", "Value": "failed"}]
    assert p["Statistic"] == "Sum" and p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert p["AlarmActions"] == [imported("AlarmsTopicArn")] == p["OKActions"]
    assert p["TreatMissingData"] == "notBreaching"


def test_alarm_on_senders_over_their_budget() -> None:
    p = cfn.props(T, "SenderOverBudgetAlarm")
    assert (p["Namespace"], p["MetricName"]) == ("Sensormail", "EmailsProcessed")
    assert p["Dimensions"] == [{"Name": "Outcome", "Value": "deferred"}]
    assert p["Statistic"] == "Sum" and p["Threshold"] == {"Ref": "SenderOverBudgetAlarmThreshold"}
    assert p["AlarmActions"] == [imported("AlarmsTopicArn")] == p["OKActions"]


def test_dashboard_shows_depth_age_dlq_outcomes_and_tasks() -> None:
    body, variables = cfn.props(T, "Dashboard")["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([A-Za-z0-9:]+)\}", body))
    assert names <= set(variables) | {"AWS::Region", "Cluster"}
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    series = [tuple(m[:2]) for w in dashboard["widgets"] for m in w["properties"]["metrics"]]
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in series
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in series
    assert ("ECS/ContainerInsights", "RunningTaskCount") in series
    outcomes = {m[3] for w in dashboard["widgets"] for m in w["properties"]["metrics"] if m[:2] == ["Sensormail", "EmailsProcessed"]}
    # The consumer's outcomes: the pipeline's (sent, fallback, duplicate) and retry, deferred, failed.
    assert outcomes == set(get_args(OutcomeKind)) | {"retry", "deferred", "failed"}
    assert "${DlqName}" in body
