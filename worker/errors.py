"""The error tree, and the one place that decides whether an AWS error is worth retrying.

```
WorkerError
├── ConfigError        at start-up only; exit non-zero with the variable's name
├── RetryableError     throttling, 5xx, timeouts: leave the message, SQS redelivers with backoff
│   └── Deferred       not a failure: the sender is over its budget; the email waits its turn
└── PermanentError     will fail again: DLQ with the reason, then delete
    ├── BadEvent       not JSON, not an S3 event
    └── MalformedEmail the MIME cannot be read within our limits
```
No recipients is not an error: it is the fallback outcome.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every error sensormail raises on purpose."""


class ConfigError(WorkerError):
    """A setting is missing or invalid; the message names the variable."""


class RetryableError(WorkerError):
    """Transient: the same message will probably succeed later (after `retry_after_s` if known)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Deferred(RetryableError):
    """Not a failure: the email must wait (its sender is over its budget, SENSORMAIL_SENDER_RATE).
    `retry_after_s` is the earliest time it can go, so SQS shows it again no sooner."""


class PermanentError(WorkerError):
    """Will fail again however often it is retried."""


class BadEvent(PermanentError):
    """The SQS body is not an event we understand."""


class MalformedEmail(PermanentError):
    """The raw email cannot be read within our limits."""


# Error codes that mean "try again later" whatever the service.
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",  # SESv2: sending rate exceeded
        # Sending paused (the kill switch, `sensormail pause`, or SES itself): the email waits.
        "SendingPausedException",  # SESv2: account or configuration set paused
        "AccountSendingPausedException",  # SES v1
        "ConfigurationSetSendingPausedException",  # SES v1
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSThrottlingException",
        "KMS.ThrottlingException",
        "TransactionInProgressException",
        "OperationAborted",
        "AWS.SimpleQueueService.NonExistentQueue",  # queue being recreated: SQS is eventually consistent
    }
)


def classify(error: BaseException) -> type[RetryableError] | type[PermanentError]:
    """Return the class an AWS or network error belongs to.

    Checked against the API that raises it: SES `MessageRejected`, S3 `NoSuchKey`, SNS
    `InvalidParameter` are permanent; throttling, any 5xx and connection trouble are not.
    """
    # Imported here, not at the top: `sensormail inspect` and the parser never touch AWS, and
    # botocore + aiohttp cost a third of a second to import.
    from aiohttp import ClientError as AiohttpClientError
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    if isinstance(error, RetryableError):
        return RetryableError
    if isinstance(error, PermanentError):
        return PermanentError
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _RETRYABLE_CODES or status >= 500 or status == 429:
            return RetryableError
        return PermanentError
    if isinstance(
        error,
        (
            EndpointConnectionError,
            ConnectTimeoutError,
            ReadTimeoutError,
            ConnectionClosedError,
            ResponseStreamingError,
            IncompleteReadError,
            AiohttpClientError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return RetryableError
    return PermanentError


def describe(error: BaseException) -> str:
    """A one-line reason fit for a log field, a DLQ message attribute or a fallback notice."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        op = error.operation_name
        return f"{op}: {err.get('Code', 'Unknown')}: {err.get('Message', '')}".strip().rstrip(":")
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
