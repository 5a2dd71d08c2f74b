"""worker.events: real-shaped SQS bodies in, S3 object refs out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.errors import BadEvent, PermanentError
from worker.events import Ignored, S3ObjectRef, decode_body

EVENTS = Path(__file__).parent.parent / "data" / "events"
BUCKET = "sensormail-incoming-111122223333"
MESSAGE_ID = "0hg7uv2pn2tne1dlqmu6ojqe4ovh3ch4v03kn181"

PUT = S3ObjectRef(
    bucket=BUCKET,
    key=f"incoming/{MESSAGE_ID}",
    size=4213,
    etag="4a1f0e7d2b8c9e6f3a5d7c1b0e2f4a68",
    version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
    sequencer="0065A3B2C1D0E9F8A7",
    event_name="ObjectCreated:Put",
)


def body(name: str) -> str:
    return (EVENTS / name).read_text(encoding="utf-8")


def test_s3_put() -> None:
    [ref] = decode_body(body("s3_put.json"))
    assert ref == PUT
    assert isinstance(ref, S3ObjectRef)
    assert ref.uri == f"s3://{BUCKET}/incoming/{MESSAGE_ID}"
    assert ref.message_id == MESSAGE_ID


def test_encoded_key_is_decoded() -> None:
    [ref] = decode_body(body("s3_put_encoded_key.json"))
    assert isinstance(ref, S3ObjectRef)
    assert ref.key == "incoming/a bé"
    assert ref.message_id == "a bé"
    assert ref.uri == f"s3://{BUCKET}/incoming/a bé"


def test_multipart_upload() -> None:
    [ref] = decode_body(body("s3_multipart.json"))
    assert isinstance(ref, S3ObjectRef)
    assert ref.event_name == "ObjectCreated:CompleteMultipartUpload"
    assert ref.size == 31457280
    assert ref.etag == "d41d8cd98f00b204e9800998ecf8427e-6"
    assert ref.message_id == "7r2bd0ua4g8kqf1h6q0l3c5t9m1n8p2s6v4x0z01"


def test_two_records() -> None:
    refs = decode_body(body("s3_two_records.json"))
    assert [r.message_id for r in refs if isinstance(r, S3ObjectRef)] == [
        MESSAGE_ID,
        "1ab2cd3ef4gh5ij6kl7mn8op9qr0st1uv2wx3yz45",
    ]
    assert refs[0] == PUT


def test_s3_test_event_is_ignored() -> None:
    assert decode_body(body("s3_test_event.json")) == [Ignored("s3:TestEvent")]


def test_sns_wrapped() -> None:
    assert decode_body(body("sns_wrapped.json")) == [PUT]


def test_sns_wrapped_test_event_is_ignored() -> None:
    envelope = json.loads(body("sns_wrapped.json"))
    envelope["Message"] = body("s3_test_event.json")
    assert decode_body(json.dumps(envelope)) == [Ignored("s3:TestEvent")]


def test_sns_subscription_confirmation_is_ignored() -> None:
    doc = {"Type": "SubscriptionConfirmation", "Message": "You have chosen to subscribe..."}
    assert decode_body(json.dumps(doc)) == [Ignored("SNS SubscriptionConfirmation")]


def test_eventbridge_object_created() -> None:
    [ref] = decode_body(body("eventbridge_object_created.json"))
    assert ref == PUT  # same object, same fields, whichever route the event took


def test_eventbridge_key_is_not_decoded() -> None:
    doc = json.loads(body("eventbridge_object_created.json"))
    doc["detail"]["object"]["key"] = "incoming/a+b%20c"
    doc["detail"]["reason"] = "CompleteMultipartUpload"
    [ref] = decode_body(json.dumps(doc))
    assert isinstance(ref, S3ObjectRef)
    assert ref.key == "incoming/a+b%20c"
    assert ref.event_name == "ObjectCreated:CompleteMultipartUpload"


def test_eventbridge_object_deleted_is_ignored() -> None:
    doc = json.loads(body("eventbridge_object_created.json"))
    doc["detail-type"] = "Object Deleted"
    assert decode_body(json.dumps(doc)) == [Ignored("not an Object Created event: Object Deleted")]


def test_object_removed_is_ignored() -> None:
    assert decode_body(body("s3_object_removed.json")) == [
        Ignored("not an ObjectCreated event: ObjectRemoved:Delete")
    ]


def test_ses_setup_notification_is_ignored() -> None:
    assert decode_body(body("ses_setup_notification.json")) == [Ignored("SES setup notification")]


def test_moto_encodes_slashes() -> None:
    doc = json.loads(body("s3_put.json"))
    doc["Records"][0]["s3"]["object"]["key"] = f"incoming%2F{MESSAGE_ID}"
    assert decode_body(json.dumps(doc)) == [PUT]


def test_plus_in_key_is_encoded_by_s3() -> None:
    doc = json.loads(body("s3_put.json"))
    doc["Records"][0]["s3"]["object"]["key"] = "incoming/c%2B%2B+notes"
    [ref] = decode_body(json.dumps(doc))
    assert isinstance(ref, S3ObjectRef)
    assert ref.key == "incoming/c++ notes"


def test_optional_fields_missing() -> None:
    doc = json.loads(body("s3_put.json"))
    doc["Records"][0]["s3"]["object"] = {"key": "incoming/abc"}
    [ref] = decode_body(json.dumps(doc))
    assert ref == S3ObjectRef(BUCKET, "incoming/abc", None, None, None, None, "ObjectCreated:Put")


PUT_NAME = {"eventName": "ObjectCreated:Put"}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("", "not JSON"),
        ("not json at all", "not JSON"),
        ("[1, 2]", "JSON is a list, not an object"),
        ('"Records"', "JSON is a str, not an object"),
        ({}, "not an S3 event"),
        ({"Records": []}, "Records is not a non-empty list"),
        ({"Records": {}}, "Records is not a non-empty list"),
        ({"Records": [42]}, "a record is not an object"),
        ({"Records": [{"eventSource": "aws:ses", "s3": {}}]}, "eventSource is 'aws:ses'"),
        ({"Records": [PUT_NAME]}, "missing object 's3'"),
        ({"Records": [PUT_NAME | {"s3": {"object": {"key": "k"}}}]}, "missing object 'bucket'"),
        ({"Records": [PUT_NAME | {"s3": {"bucket": {"name": "b"}, "object": {}}}]},
         "missing s3.object.key"),
        ({"Records": [PUT_NAME | {"s3": {"bucket": {}, "object": {"key": "k"}}}]},
         "missing s3.bucket.name"),
        ({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]},
         "missing eventName"),
        ({"Type": "Notification", "Message": {"Records": []}}, "Message is not a string"),
        ({"Type": "Notification", "Message": "not json"}, "not JSON"),
        ({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}},
         "missing object 'object'"),
        ({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"},
         "not an S3 event"),
    ],
)
def test_bad_inputs(doc: str | dict[str, object], expected: str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(BadEvent, match=expected) as caught:
        decode_body(text)
    assert isinstance(caught.value, PermanentError)
    assert repr(text[:200]) in str(caught.value)


def test_bad_event_message_quotes_at_most_200_characters() -> None:
    text = '{"Records": [], "padding": "' + "x" * 5000 + '"}'
    with pytest.raises(BadEvent) as caught:
        decode_body(text)
    message = str(caught.value)
    assert repr(text[:200]) + "..." in message
    assert len(message) < 300
