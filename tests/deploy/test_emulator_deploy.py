"""Deploy both templates on the test emulator and check the resources through the service APIs.

Stack status proves little: moto and LocalStack both report CREATE_COMPLETE for resources and
properties they skip. So each template is deployed without the resource types the emulator cannot
create (named below, and checked to still be the ones it cannot), and only what the emulator
really applies is asserted; the rest is covered by cfn-lint and the template-reading tests.

moto (the default here) creates buckets with their encryption, queues with every attribute,
topics with their attributes, the Lambda function and roles with their inline policies, the ECR
repository's tag mutability, log groups with retention, the ECS cluster, service and container
definition, the security group and the dashboard. It ignores bucket public-access blocks,
lifecycle and notifications, repository scanning, Lambda architectures, security-group egress,
ECS cluster settings, capacity providers, deployment and network configuration, and task-level
Fargate settings. moto's templates have no Secrets Manager either, so the service is deployed with
LinkSigner=task-role (the dedicated signer's user, key and secret are checked by reading the
template). LocalStack (when Docker answers; not run where these tests were written) gets the
buckets, queues and topics only, the services the test container starts, and is then also checked
for the bucket settings moto ignores; ECS and ECR need LocalStack Pro, so the service is skipped.
"""

from __future__ import annotations

import ast
import json
import secrets
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.deploy import cfn
from worker.local.emulator import Emulator

# Resource types each emulator cannot create from a template (a trailing * is a prefix).
MOTO_CANNOT = {
    "pipeline.yaml": {
        "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::Subscription", "AWS::CloudWatch::Alarm",
        "AWS::SES::EmailIdentity", "AWS::SES::ReceiptRuleSet", "AWS::SES::ReceiptRule",
        "Custom::ReceiptRuleSetActivation",  # moto runs custom resources' Lambdas in Docker only
    },
    "service.yaml": {
        "AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::CloudWatch::Alarm", "AWS::SecretsManager::Secret",
    },
}
# The LocalStack container of tests/conftest.py starts S3, SQS, SNS, SES, IAM and CloudFormation.
LOCALSTACK_CANNOT = {"Custom::*", "AWS::SES::*", "AWS::ECR::*", "AWS::ECS::*", "AWS::ApplicationAutoScaling::*",
                     "AWS::Lambda::*", "AWS::Logs::*", "AWS::IAM::*", "AWS::CloudWatch::*", "AWS::Route53::*"}

PIPELINE_PARAMETERS = {"MailDomain": "sensors.example.com", "RecipientAddress": "intake-7f3k@sensors.example.com"}
# moto has no Secrets Manager in templates: the service is deployed with the task role signing
# links, and the conditions that parameter decides are decided before moto sees the template.
DECIDED_CONDITIONS = {"service.yaml": {"UseSignerUser": False}}
SENDER = "alerts@sensors.example.com"
IMAGE_TAG = "0123abc"


def is_moto(emulator: Emulator) -> bool:
    return emulator.kind != "localstack"


def cannot(emulator: Emulator, name: str) -> set[str]:
    if not is_moto(emulator):
        return LOCALSTACK_CANNOT
    from moto.cloudformation.parsing import get_model_map

    unsupported = {r["Type"] for r in cfn.load(name)["Resources"].values() if r["Type"] not in get_model_map()}
    # If moto learns a type, this fails: drop it from MOTO_CANNOT and check it through the API.
    assert unsupported == MOTO_CANNOT[name]
    return unsupported


def client(service: str) -> Any:
    config = Config(s3={"addressing_style": "path"}) if service == "s3" else None
    return boto3.client(service, config=config)


class Stack:
    def __init__(self, name: str, template: dict[str, Any], removed: set[str], parameters: dict[str, str]) -> None:
        self.cf = client("cloudformation")
        self.name = name
        self.template = template
        self.removed = removed
        self.cf.create_stack(
            StackName=name,
            TemplateBody=cfn.to_json(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
        self.cf.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        described = self.cf.describe_stacks(StackName=name)["Stacks"][0]
        self.status = described["StackStatus"]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        summaries = self.cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
        self.physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in summaries if r["LogicalResourceId"]}

    def delete(self) -> None:
        try:
            self.cf.delete_stack(StackName=self.name)
        except Exception:  # noqa: BLE001 - clean-up on a throwaway emulator
            pass


def stack_id_suffix_for_localstack(node: Any) -> Any:
    """The templates name buckets after the last group of the stack id's UUID (`!Select [4, !Split
    ["-", ...]]`); LocalStack's stack ids end in a short id without dashes, so take it whole."""
    if isinstance(node, dict):
        select = node.get("Fn::Select")
        if isinstance(select, list) and select[0] == 4 and "AWS::StackId" in json.dumps(select[1]):
            return {"Fn::Select": [0, select[1]]}
        return {k: stack_id_suffix_for_localstack(v) for k, v in node.items()}
    if isinstance(node, list):
        return [stack_id_suffix_for_localstack(v) for v in node]
    return node


def deploy(emulator: Emulator, name: str, parameters: dict[str, str]) -> Stack:
    decided = cfn.with_conditions(cfn.load(name), DECIDED_CONDITIONS.get(name, {}))
    template, removed = cfn.without(decided, cannot(emulator, name))
    if not is_moto(emulator):
        template = stack_id_suffix_for_localstack(template)
    if is_moto(emulator) and "ImageRepository" in template["Resources"]:
        # moto names an unnamed repository after the stack, with capitals ECR then refuses.
        template["Resources"]["ImageRepository"]["Properties"]["RepositoryName"] = f"sensormail-{secrets.token_hex(4)}"
    return Stack(f"t{secrets.token_hex(4)}-{name.split('.')[0]}", template, removed, parameters)


@pytest.fixture(scope="module")
def pipeline(emulator: Emulator) -> Iterator[Stack]:
    stack = deploy(emulator, "pipeline.yaml", PIPELINE_PARAMETERS)
    yield stack
    stack.delete()


@pytest.fixture(scope="module")
def service(emulator: Emulator, pipeline: Stack) -> Iterator[Stack]:
    if not is_moto(emulator):
        pytest.skip("ECS and ECR need LocalStack Pro")
    subnets = client("ec2").describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    stack = deploy(emulator, "service.yaml", {
        "PipelineStackName": pipeline.name,
        "ImageTag": IMAGE_TAG,
        "SenderAddress": SENDER,
        "AllowedRecipientDomains": "example.com,example.org",
        "LinkSigner": "task-role",
        "VpcId": subnets[0]["VpcId"],
        "Subnets": ",".join(s["SubnetId"] for s in subnets[:2]),
    })
    yield stack
    stack.delete()


def needs(stack: Stack, *logical_ids: str) -> None:
    missing = [k for k in logical_ids if k in stack.removed]
    if missing:
        pytest.skip(f"{', '.join(missing)}: not created on this emulator")


def inline_policy(role_arn_or_name: str) -> list[dict[str, Any]]:
    """The statements of a role's one inline policy (moto returns the document as Python repr)."""
    iam = client("iam")
    role = role_arn_or_name.split("/")[-1]
    [name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            document = ast.literal_eval(document)
    statements = []
    for s in document["Statement"]:
        s = dict(s)
        for key in ("Action", "Resource"):
            values = s[key] if isinstance(s[key], list) else [s[key]]
            s[key] = sorted(values)
        statements.append(s)
    return statements


# ---------------------------------------------------------------- the pipeline stack

def test_pipeline_creates_every_resource_it_keeps(pipeline: Stack) -> None:
    assert pipeline.status == "CREATE_COMPLETE"
    conditional = {k for k, v in pipeline.template["Resources"].items() if "Condition" in v}
    assert set(pipeline.template["Resources"]) - conditional <= set(pipeline.physical)
    assert all(pipeline.physical[k] for k in set(pipeline.template["Resources"]) - conditional)


def test_buckets_are_named_after_the_stack_and_encrypted(pipeline: Stack, emulator: Emulator) -> None:
    incoming, attachments = pipeline.outputs["IncomingBucketName"], pipeline.outputs["AttachmentsBucketName"]
    assert incoming.startswith("sensormail-incoming-") and attachments.startswith("sensormail-attachments-")
    assert incoming.rsplit("-", 1)[1] == attachments.rsplit("-", 1)[1]  # one suffix, from the stack id
    s3 = client("s3")
    for bucket in (incoming, attachments):
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_the_attachments_bucket_logs_to_the_access_log_bucket(pipeline: Stack, emulator: Emulator) -> None:
    s3 = client("s3")
    attachments, logs = pipeline.outputs["AttachmentsBucketName"], pipeline.outputs["AccessLogsBucketName"]
    assert logs == f"sensormail-access-logs-{attachments.rsplit('-', 1)[1]}"
    rules = s3.get_bucket_encryption(Bucket=logs)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # Both emulators' CloudFormation drop a bucket's LoggingConfiguration (LocalStack 4.4 drops the
    # lifecycle too; test_pipeline_template.py reads both from the template). If one learns it,
    # this fails: check the target bucket and prefix here instead.
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=attachments)
    if is_moto(emulator):
        pytest.skip("moto ignores public access blocks and bucket policies in templates")
    assert all(s3.get_public_access_block(Bucket=logs)["PublicAccessBlockConfiguration"].values())
    policy = {s["Sid"]: s for s in json.loads(s3.get_bucket_policy(Bucket=logs)["Policy"])["Statement"]}
    delivery = policy["AllowServerAccessLogDelivery"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:s3:::{attachments}"
    assert "DenyInsecureTransport" in policy


def test_bucket_settings_moto_ignores(pipeline: Stack, emulator: Emulator) -> None:
    """Checked on LocalStack: public access blocks, TLS-only policies, the queue notification."""
    if is_moto(emulator):
        pytest.skip("moto ignores public access blocks, lifecycle, policies and notifications in templates")
    s3 = client("s3")
    incoming, attachments = pipeline.outputs["IncomingBucketName"], pipeline.outputs["AttachmentsBucketName"]
    for bucket in (incoming, attachments):
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        assert "DenyInsecureTransport" in {s.get("Sid") for s in policy["Statement"]}
    # LocalStack 4.4's CloudFormation drops a bucket's LifecycleConfiguration (the rules are read
    # from the template in test_pipeline_template.py), so the lifecycle is not checked here.
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket=attachments)
    [notify] = s3.get_bucket_notification_configuration(Bucket=incoming)["QueueConfigurations"]
    assert notify["QueueArn"] == pipeline.outputs["QueueArn"]


def test_incoming_queue_redrives_to_the_dlq(pipeline: Stack) -> None:
    sqs = client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=pipeline.outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == pipeline.outputs["DeadLetterQueueArn"]
    assert int(redrive["maxReceiveCount"]) == 10
    assert attrs["MessageRetentionPeriod"] == "604800"
    assert attrs["VisibilityTimeout"] == "60" == pipeline.outputs["VisibilitySeconds"]
    assert attrs["ReceiveMessageWaitTimeSeconds"] == "20"
    assert attrs["SqsManagedSseEnabled"] == "true"
    dlq = sqs.get_queue_attributes(QueueUrl=pipeline.outputs["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    assert dlq["MessageRetentionPeriod"] == "1209600" and dlq["SqsManagedSseEnabled"] == "true"
    assert "RedrivePolicy" not in dlq


def test_topics(pipeline: Stack) -> None:
    sns = client("sns")
    fallback = sns.get_topic_attributes(TopicArn=pipeline.outputs["FallbackTopicArn"])["Attributes"]
    assert fallback["KmsMasterKeyId"] == "alias/aws/sns"
    alarms = sns.get_topic_attributes(TopicArn=pipeline.outputs["AlarmsTopicArn"])["Attributes"]
    assert not alarms.get("KmsMasterKeyId")  # CloudWatch cannot publish with the AWS-managed key


def test_image_repository_tags_are_immutable(pipeline: Stack) -> None:
    needs(pipeline, "ImageRepository")
    name = pipeline.outputs["RepositoryUri"].split("/", 1)[1]
    [repo] = client("ecr").describe_repositories(repositoryNames=[name])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["repositoryArn"] == pipeline.outputs["RepositoryArn"]


def test_rule_set_activator_function_and_role(pipeline: Stack) -> None:
    needs(pipeline, "RuleSetActivatorFunction", "RuleSetActivatorRole", "RuleSetActivatorLogGroup")
    function = client("lambda").get_function(FunctionName=pipeline.physical["RuleSetActivatorFunction"])["Configuration"]
    assert function["Runtime"] == "python3.13" and function["Handler"] == "index.handler"
    assert function["Timeout"] == 60
    assert function["Role"].endswith("/" + pipeline.physical["RuleSetActivatorRole"])
    actions = {a for s in inline_policy(pipeline.physical["RuleSetActivatorRole"]) for a in s["Action"]}
    assert actions == {"ses:DescribeActiveReceiptRuleSet", "ses:SetActiveReceiptRuleSet",
                       "logs:CreateLogStream", "logs:PutLogEvents"}
    logs = client("logs").describe_log_groups(logGroupNamePrefix=pipeline.physical["RuleSetActivatorLogGroup"])
    assert logs["logGroups"][0]["retentionInDays"] == 30


def test_exports_cover_what_the_service_imports(pipeline: Stack) -> None:
    needs(pipeline, "ImageRepository")
    exported = {e["Name"] for e in client("cloudformation").list_exports()["Exports"]}
    wanted = {n.replace("${PipelineStackName}", pipeline.name) for n in cfn.imports(cfn.load("service.yaml"))}
    assert wanted <= exported


# ---------------------------------------------------------------- the service stack

def task_definition(service: Stack) -> dict[str, Any]:
    ecs = client("ecs")
    [svc] = ecs.describe_services(cluster=service.outputs["ClusterName"], services=[service.outputs["ServiceName"]])["services"]
    assert svc["status"] == "ACTIVE"
    return dict(ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"])


def test_service_creates_every_resource_it_keeps(service: Stack) -> None:
    assert service.status == "CREATE_COMPLETE"
    assert set(service.template["Resources"]) <= set(service.physical)
    assert service.removed == {"ScalableTarget", "BacklogScalingPolicy", "ScaleOutFromZeroPolicy",
                               "ScaleOutFromZeroAlarm", "WorkerErrorAlarm", "SenderOverBudgetAlarm"}


def test_the_container_gets_the_pipelines_resources(service: Stack, pipeline: Stack) -> None:
    [worker] = task_definition(service)["containerDefinitions"]
    assert worker["image"] == f"{pipeline.outputs['RepositoryUri']}:{IMAGE_TAG}"
    env = {e["name"]: e["value"] for e in worker["environment"]}
    assert env == {
        "SENSORMAIL_QUEUE_URL": pipeline.outputs["QueueUrl"],
        "SENSORMAIL_DLQ_URL": pipeline.outputs["DeadLetterQueueUrl"],
        "SENSORMAIL_ATTACHMENTS_BUCKET": pipeline.outputs["AttachmentsBucketName"],
        "SENSORMAIL_FALLBACK_TOPIC_ARN": pipeline.outputs["FallbackTopicArn"],
        "SENSORMAIL_VISIBILITY_SECONDS": "60",
        "SENSORMAIL_SENDER": SENDER,
        "SENSORMAIL_CONFIGURATION_SET": "sensormail",  # deploy/sending.yaml's, by default
        "SENSORMAIL_SES_API": "v2",
        "SENSORMAIL_CONCURRENCY": "4",
        "SENSORMAIL_DRAIN_SECONDS": "25",
        "SENSORMAIL_LINK_EXPIRY_SECONDS": "259200",
        "SENSORMAIL_SIGNER_SECRET_ARN": "",
        "SENSORMAIL_ALLOWED_SENDERS": "",
        "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS": "example.com,example.org",
        "SENSORMAIL_INTAKE_DOMAIN": PIPELINE_PARAMETERS["MailDomain"],
        "SENSORMAIL_MAX_RECIPIENTS": "50",
        "SENSORMAIL_SENDER_RATE": "60",
        "SENSORMAIL_MAX_SEND_RATE": "0",
        "AWS_REGION": boto3.session.Session().region_name,
    }


def test_the_container_drains_before_sigkill(service: Stack) -> None:
    [worker] = task_definition(service)["containerDefinitions"]
    assert worker["stopTimeout"] == 35 > 25 + 5
    assert worker["dockerLabels"] == {"sensormail.signer-key": "task-role"}
    assert worker["readonlyRootFilesystem"] is True
    assert worker["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp"}]
    assert worker["healthCheck"]["command"] == ["CMD", "sensormail", "health", "--max-age", "60"]
    options = worker["logConfiguration"]["options"]
    assert worker["logConfiguration"]["logDriver"] == "awslogs"
    assert options["awslogs-group"] == service.outputs["LogGroupName"]
    [group] = client("logs").describe_log_groups(logGroupNamePrefix=service.outputs["LogGroupName"])["logGroups"]
    assert group["retentionInDays"] == 30


def test_task_role_resolves_to_the_pipelines_resources(service: Stack, pipeline: Stack) -> None:
    incoming, attachments = pipeline.outputs["IncomingBucketName"], pipeline.outputs["AttachmentsBucketName"]
    domain = SENDER.split("@")[1]
    arn_prefix = pipeline.outputs["FallbackTopicArn"].split(":sns:")[1].rsplit(":", 1)[0]  # region:account
    granted = {s["Sid"]: (s["Action"], s["Resource"]) for s in inline_policy(service.outputs["TaskRoleArn"])}
    assert granted == {
        "ReadIncomingEmail": (["s3:GetObject"], [f"arn:aws:s3:::{incoming}/incoming/*"]),
        "StoreAttachments": (["s3:AbortMultipartUpload", "s3:PutObject"], [f"arn:aws:s3:::{attachments}/attachments/*"]),
        "PresignedLinksReadAttachments": (["s3:GetObject"], [f"arn:aws:s3:::{attachments}/attachments/*"]),
        "SeeRevokedEmails": (["s3:ListBucket"], [f"arn:aws:s3:::{attachments}"]),
        "IdempotencyRecords": (["s3:GetObject", "s3:PutObject"], [f"arn:aws:s3:::{attachments}/state/*"]),
        "ConsumeIncomingQueue": (["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"],
                                 [pipeline.outputs["QueueArn"]]),
        "DeadLetterPermanentFailures": (["sqs:SendMessage"], [pipeline.outputs["DeadLetterQueueArn"]]),
        "PublishFallbackNotices": (["sns:Publish"], [pipeline.outputs["FallbackTopicArn"]]),
        "ReadSendingQuotaAndSuppressions": (
            ["ses:GetAccount", "ses:GetAccountSendingEnabled", "ses:GetSendQuota", "ses:GetSuppressedDestination"], ["*"]),
        "SendAsTheSender": (["ses:SendEmail", "ses:SendRawEmail"], sorted([
            f"arn:aws:ses:{arn_prefix}:identity/{SENDER}", f"arn:aws:ses:{arn_prefix}:identity/{domain}",
            f"arn:aws:ses:{arn_prefix}:configuration-set/sensormail"])),
        "NeverMailTheIntake": (["ses:SendEmail", "ses:SendRawEmail"], ["*"]),
    }
    statements = {s["Sid"]: s for s in inline_policy(service.outputs["TaskRoleArn"])}
    assert statements["SendAsTheSender"]["Condition"] == {
        "StringEquals": {"ses:FromAddress": SENDER},
        "ForAllValues:StringLike": {"ses:Recipients": ["*@example.com", "*@example.org", "*@*.example.com", "*@*.example.org"]},
    }
    assert statements["PresignedLinksReadAttachments"]["Condition"] == {
        "StringEquals": {"s3:authType": "REST-QUERY-STRING"}, "NumericLessThanEquals": {"s3:signatureAge": "604800000"}}
    assert statements["SeeRevokedEmails"]["Condition"] == {"StringLike": {"s3:prefix": "revoked/*"}}
    mail_domain = PIPELINE_PARAMETERS["MailDomain"]
    assert statements["NeverMailTheIntake"]["Effect"] == "Deny"
    assert statements["NeverMailTheIntake"]["Condition"] == {
        "ForAnyValue:StringLike": {"ses:Recipients": [f"*@{mail_domain}", f"*@*.{mail_domain}"]}}


def test_execution_role_resolves_to_one_repository_and_log_group(service: Stack, pipeline: Stack) -> None:
    # moto's task definitions drop the role ARNs, so the role is found through the stack.
    resources = {s["Sid"]: s["Resource"] for s in inline_policy(service.physical["ExecutionRole"])}
    assert resources["PullWorkerImage"] == [pipeline.outputs["RepositoryArn"]]
    assert resources["RegistryLogin"] == ["*"]
    region_account = pipeline.outputs["QueueArn"].split(":sqs:")[1].rsplit(":", 1)[0]
    assert resources["WriteWorkerLogs"] == [
        f"arn:aws:logs:{region_account}:log-group:{service.outputs['LogGroupName']}:*"]


def test_tasks_accept_no_connections(service: Stack) -> None:
    [group] = client("ec2").describe_security_groups(GroupIds=[service.physical["TaskSecurityGroup"]])["SecurityGroups"]
    assert group["IpPermissions"] == []


def test_dashboard_names_the_real_queues_and_service(service: Stack, pipeline: Stack) -> None:
    body = client("cloudwatch").get_dashboard(DashboardName=service.physical["Dashboard"])["DashboardBody"]
    dashboard = json.loads(body)
    dimensions = {tuple(m[2:4]) for w in dashboard["widgets"] for m in w["properties"]["metrics"]}
    queue_name = pipeline.outputs["QueueUrl"].rsplit("/", 1)[1]
    dlq_name = pipeline.outputs["DeadLetterQueueUrl"].rsplit("/", 1)[1]
    assert ("QueueName", queue_name) in dimensions and ("QueueName", dlq_name) in dimensions
    assert ("ClusterName", service.outputs["ClusterName"]) in dimensions
    assert service.outputs["ServiceName"] in body
