"""SQS message body -> the S3 objects to process.

The incoming queue receives S3 event notifications for the raw emails SES stores. They arrive in
one of these shapes, all handled here:

- an S3 event notification, ``{"Records": [...]}``, one or more records (SNS raw delivery on, or
  S3 -> SQS directly);
- the same inside an SNS envelope, ``{"Type": "Notification", "Message": "<json string>"}``
  (SNS raw delivery off);
- an EventBridge event, ``{"detail-type": "Object Created", "source": "aws.s3", "detail": ...}``;
- the ``s3:TestEvent`` S3 sends when a notification is configured, and the
  ``AMAZON_SES_SETUP_NOTIFICATION`` object SES writes when a receipt rule is created: both ignored.

S3 event notifications URL-encode the key (``"red flower.jpg"`` -> ``"red+flower.jpg"``; moto also
encodes ``/``), so keys are decoded with ``unquote_plus``. AWS documents no such encoding for the
EventBridge ``detail.object.key``, so those keys are taken as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from worker.errors import BadEvent

SES_SETUP_OBJECT = "AMAZON_SES_SETUP_NOTIFICATION"

# EventBridge names the API call (`reason`); the notification names the event. Map one to the other.
_EVENTBRIDGE_REASONS = {
    "PutObject": "ObjectCreated:Put",
    "POST Object": "ObjectCreated:Post",
    "CopyObject": "ObjectCreated:Copy",
    "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
}


@dataclass(frozen=True, slots=True)
class S3ObjectRef:
    """One stored object to process; `key` is decoded, `size` in bytes when the event says."""

    bucket: str
    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    sequencer: str | None
    event_name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def message_id(self) -> str:
        """The SES message id: SES names each object `<prefix><messageId>`."""
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event that is not an error but has nothing to process; `reason` is for the log."""

    reason: str


def decode_body(body: str) -> list[S3ObjectRef | Ignored]:
    """Decode one SQS message body. Raises `BadEvent` for anything that is not a known event."""
    doc = _load(body, body)
    if doc.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return [Ignored(f"SNS {doc['Type']}")]
    if doc.get("Type") == "Notification" and "Message" in doc:
        message = doc["Message"]
        if not isinstance(message, str):
            raise BadEvent(f"SNS notification whose Message is not a string: {_excerpt(body)}")
        doc = _load(message, body)
    return _decode_event(doc, body)


def _decode_event(doc: dict[str, Any], body: str) -> list[S3ObjectRef | Ignored]:
    if doc.get("Event") == "s3:TestEvent":
        return [Ignored("s3:TestEvent")]
    if "Records" in doc:
        records = doc["Records"]
        if not isinstance(records, list) or not records:
            raise BadEvent(f"Records is not a non-empty list: {_excerpt(body)}")
        return [_from_record(record, body) for record in records]
    if doc.get("source") == "aws.s3" and "detail-type" in doc:
        return [_from_eventbridge(doc, body)]
    raise BadEvent(f"not an S3 event (no Records, no EventBridge detail): {_excerpt(body)}")


def _from_record(record: object, body: str) -> S3ObjectRef | Ignored:
    if not isinstance(record, dict):
        raise BadEvent(f"a record is not an object: {_excerpt(body)}")
    source = record.get("eventSource", "aws:s3")
    if source != "aws:s3":
        raise BadEvent(f"record eventSource is {source!r}, not 'aws:s3': {_excerpt(body)}")
    s3 = _obj(record, "s3", body)
    bucket = _str(_obj(s3, "bucket", body), "name", "s3.bucket.name", body)
    obj = _obj(s3, "object", body)
    key = unquote_plus(_str(obj, "key", "s3.object.key", body))
    event_name = _str(record, "eventName", "eventName", body).removeprefix("s3:")
    if not event_name.startswith("ObjectCreated:"):
        return Ignored(f"not an ObjectCreated event: {event_name}")
    if key.rsplit("/", 1)[-1] == SES_SETUP_OBJECT:
        return Ignored("SES setup notification")
    return S3ObjectRef(
        bucket=bucket,
        key=key,
        size=_size(obj.get("size")),
        etag=_opt(obj.get("eTag")),
        version_id=_opt(obj.get("versionId")),
        sequencer=_opt(obj.get("sequencer")),
        event_name=event_name,
    )


def _from_eventbridge(doc: dict[str, Any], body: str) -> S3ObjectRef | Ignored:
    detail_type = doc["detail-type"]
    if detail_type != "Object Created":
        return Ignored(f"not an Object Created event: {detail_type}")
    detail = _obj(doc, "detail", body)
    bucket = _str(_obj(detail, "bucket", body), "name", "detail.bucket.name", body)
    obj = _obj(detail, "object", body)
    key = _str(obj, "key", "detail.object.key", body)
    if key.rsplit("/", 1)[-1] == SES_SETUP_OBJECT:
        return Ignored("SES setup notification")
    reason = detail.get("reason")
    if isinstance(reason, str) and reason:
        event_name = _EVENTBRIDGE_REASONS.get(reason, f"ObjectCreated:{reason}")
    else:
        event_name = "ObjectCreated:*"
    return S3ObjectRef(
        bucket=bucket,
        key=key,
        size=_size(obj.get("size")),
        etag=_opt(obj.get("etag")),
        version_id=_opt(obj.get("version-id")),
        sequencer=_opt(obj.get("sequencer")),
        event_name=event_name,
    )


def _load(text: str, body: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadEvent(f"not JSON ({exc}): {_excerpt(body)}") from None
    if not isinstance(doc, dict):
        raise BadEvent(f"JSON is a {type(doc).__name__}, not an object: {_excerpt(body)}")
    return doc


def _obj(parent: dict[str, Any], name: str, body: str) -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise BadEvent(f"missing object {name!r}: {_excerpt(body)}")
    return value


def _str(parent: dict[str, Any], name: str, path: str, body: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise BadEvent(f"missing {path}: {_excerpt(body)}")
    return value


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _size(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _excerpt(body: str) -> str:
    """The first 200 characters of the body, on one line, for the error message."""
    return repr(body[:200]) + ("..." if len(body) > 200 else "")
