"""The local SES SMTP stand-in speaks like SES SMTP: STARTTLS or implicit TLS, AUTH LOGIN/PLAIN with
the device credentials, SES's refusals for everything else; what it accepts lands in S3."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from worker.aws.clients import Clients
from worker.local.provision import INCOMING_PREFIX, LocalResources
from worker.local.run import LOCAL_DEVICE_KEY
from worker.local.smtp import SmtpStandIn, start_smtp
from worker.local.tls import LocalCertificate, make_certificate
from worker.ops.smtp_credentials import device_settings

pytestmark = pytest.mark.anyio
INTAKE = "intake-7f3k@mail.example.com"
DEVICE = device_settings(*LOCAL_DEVICE_KEY, "us-east-1", INTAKE)
EMAIL = (
    b"From: station7@devices.example.com\r\nTo: " + INTAKE.encode() + b"\r\nSubject: tls test\r\n\r\n"
    b":Email_Rxers_Code:ops@example.com:Email_Rxers_Code:\r\nhello\r\n"
)


@pytest.fixture
def certificate(tmp_path: Path) -> LocalCertificate:
    return make_certificate(tmp_path)


@pytest.fixture
async def standin(aws: Clients, resources: LocalResources, certificate: LocalCertificate) -> AsyncIterator[SmtpStandIn]:
    smtp = await start_smtp(aws.s3, resources.incoming_bucket, INTAKE, 0, tls=certificate.server_context(),
                            credentials=(DEVICE.username, DEVICE.password), tls_port=0)
    yield smtp
    await smtp.close()


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)


async def stored(aws: Clients, resources: LocalResources) -> list[bytes]:
    listing = await aws.s3.list_objects_v2(Bucket=resources.incoming_bucket, Prefix=INCOMING_PREFIX)
    bodies = []
    for item in listing.get("Contents", []):
        response = await aws.s3.get_object(Bucket=resources.incoming_bucket, Key=item["Key"])
        async with response["Body"] as body:
            bodies.append(await body.read())
    return bodies


async def test_starttls_then_login_delivers_like_ses(
    standin: SmtpStandIn, certificate: LocalCertificate, aws: Clients, resources: LocalResources
) -> None:
    def send() -> tuple[bool, str]:
        with smtplib.SMTP("127.0.0.1", standin.port, timeout=10) as smtp:
            smtp.ehlo()
            offers_auth_before_tls = smtp.has_extn("auth")
            smtp.starttls(context=certificate.client_context())  # verifies the certificate and 127.0.0.1
            smtp.ehlo()
            mechanisms = smtp.esmtp_features["auth"]
            smtp.login(DEVICE.username, DEVICE.password)
            smtp.sendmail("station7@devices.example.com", [INTAKE], EMAIL)
            return offers_auth_before_tls, mechanisms

    offers_auth_before_tls, mechanisms = await in_thread(send)
    assert not offers_auth_before_tls
    assert {"LOGIN", "PLAIN"} <= set(mechanisms.split())
    [raw] = await stored(aws, resources)
    assert raw.endswith(EMAIL) and b"X-SES-Spam-Verdict: PASS" in raw


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_wrong_credentials_are_refused_as_ses_refuses_them(
    standin: SmtpStandIn, certificate: LocalCertificate, mechanism: str
) -> None:
    def login(user: str, password: str) -> tuple[int, bytes | str]:
        with smtplib.SMTP("127.0.0.1", standin.port, timeout=10) as smtp:
            smtp.starttls(context=certificate.client_context())
            smtp.ehlo()
            smtp.user, smtp.password = user, password
            authobject = smtp.auth_login if mechanism == "LOGIN" else smtp.auth_plain
            try:
                return smtp.auth(mechanism, authobject)
            except smtplib.SMTPAuthenticationError as error:
                return error.smtp_code, error.smtp_error

    assert await in_thread(lambda: login(DEVICE.username, DEVICE.password + "x")) == (
        535, b"Authentication Credentials Invalid"
    )
    assert (await in_thread(lambda: login("AKIAWRONGWRONGWRONG1", DEVICE.password)))[0] == 535
    assert (await in_thread(lambda: login(DEVICE.username, DEVICE.password)))[0] == 235


async def test_nothing_but_starttls_before_tls(standin: SmtpStandIn) -> None:
    def session() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", standin.port, timeout=10) as smtp:
            smtp.ehlo()
            return [smtp.docmd("AUTH", "LOGIN"), smtp.docmd("MAIL", "FROM:<station7@devices.example.com>")]

    for code, text in await in_thread(session):
        assert (code, text) == (530, b"Must issue a STARTTLS command first")


async def test_mail_without_auth_is_refused(standin: SmtpStandIn, certificate: LocalCertificate) -> None:
    def session() -> None:
        with smtplib.SMTP("127.0.0.1", standin.port, timeout=10) as smtp:
            smtp.starttls(context=certificate.client_context())
            smtp.sendmail("station7@devices.example.com", [INTAKE], EMAIL)

    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        await in_thread(session)
    assert refused.value.smtp_code == 530 and refused.value.smtp_error == b"Authentication required"


async def test_implicit_tls_port(
    standin: SmtpStandIn, certificate: LocalCertificate, aws: Clients, resources: LocalResources
) -> None:
    tls_port = standin.tls_port
    assert tls_port is not None

    def send() -> None:
        with smtplib.SMTP_SSL("127.0.0.1", tls_port, timeout=10, context=certificate.client_context()) as smtp:
            smtp.login(DEVICE.username, DEVICE.password)
            smtp.sendmail("station7@devices.example.com", [INTAKE], EMAIL)

    await in_thread(send)
    assert len(await stored(aws, resources)) == 1


async def test_a_client_that_does_not_trust_the_certificate_fails_the_handshake(standin: SmtpStandIn) -> None:
    def session() -> None:
        with smtplib.SMTP("127.0.0.1", standin.port, timeout=10) as smtp:
            smtp.starttls(context=ssl.create_default_context())

    with pytest.raises(ssl.SSLCertVerificationError):
        await in_thread(session)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
async def test_the_guides_openssl_session(standin: SmtpStandIn, certificate: LocalCertificate) -> None:
    """The original guide's check: `openssl s_client -starttls smtp`, then AUTH LOGIN by hand."""
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    script = "\r\n".join(["EHLO device", "AUTH LOGIN", b64(DEVICE.username), b64(DEVICE.password), "QUIT", ""])

    def run() -> str:
        done = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-crlf", "-quiet", "-connect", f"127.0.0.1:{standin.port}",
             "-CAfile", str(certificate.cert_path), "-verify_return_error"],
            input=script, capture_output=True, text=True, timeout=20,
        )
        return done.stdout

    out = await in_thread(run)
    assert "235 2.7.0 Authentication successful" in out, out
