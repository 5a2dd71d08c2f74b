from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from worker.mail.policy import screen, ses_verdicts, split_recipients

SES_BLOCK = (
    b"Return-Path: <station7@devices.example.com>\r\n"
    b"Received: from a.example by inbound-smtp.eu-west-1.amazonaws.com with SMTP id x\r\n"
    b"X-SES-Spam-Verdict: PASS\r\n"
    b"X-SES-Virus-Verdict: FAIL\r\n"
    b"Received-SPF: pass\r\n"
    b"Authentication-Results: amazonses.com; spf=pass smtp.mailfrom=x; dkim=fail header.i=@x; dmarc=none\r\n"
    b"X-SES-RECEIPT: AEFBQU\r\n"
)


def headers(raw: bytes):  # type: ignore[no-untyped-def]
    return BytesHeaderParser(policy=compat32).parsebytes(raw + b"\r\n")


def test_verdicts_come_from_the_ses_block() -> None:
    v = ses_verdicts(headers(SES_BLOCK + b"From: a@devices.example.com\r\nSubject: s\r\n"))
    assert (v.spam, v.virus, v.spf, v.dkim, v.dmarc, v.trusted) == ("PASS", "FAIL", "pass", "fail", "none", True)


def test_a_forged_verdict_below_the_ses_block_is_ignored() -> None:
    forged = SES_BLOCK + b"X-SES-Virus-Verdict: PASS\r\nFrom: a@devices.example.com\r\n"
    assert ses_verdicts(headers(forged)).virus == "FAIL"
    assert screen(headers(forged), allowed_senders=(), spam_action="pass") == "virus verdict FAIL"


def test_forged_verdicts_without_an_ses_block_are_not_trusted() -> None:
    only_forged = b"X-SES-Virus-Verdict: PASS\r\nX-SES-Spam-Verdict: PASS\r\nFrom: a@x.com\r\n"
    v = ses_verdicts(headers(only_forged))
    assert (v.trusted, v.virus, v.spam) == (False, "MISSING", "MISSING")


def test_spam_fail_is_configurable() -> None:
    spam = SES_BLOCK.replace(b"Spam-Verdict: PASS", b"Spam-Verdict: FAIL").replace(b"Virus-Verdict: FAIL", b"Virus-Verdict: PASS")
    assert screen(headers(spam), allowed_senders=(), spam_action="quarantine") == "spam verdict FAIL"
    assert screen(headers(spam), allowed_senders=(), spam_action="pass") is None


def test_sender_allowlist_checks_envelope_and_from() -> None:
    clean = SES_BLOCK.replace(b"Virus-Verdict: FAIL", b"Virus-Verdict: PASS").replace(b"dkim=fail", b"dkim=pass")
    ok = headers(clean + b"From: Pump <station7@devices.example.com>\r\n")
    assert screen(ok, allowed_senders=("devices.example.com",), spam_action="pass") is None
    spoofed_from = headers(clean + b"From: ceo@bank.example\r\n")
    decision = screen(spoofed_from, allowed_senders=("devices.example.com",), spam_action="pass")
    assert decision is not None and "ceo@bank.example" in decision
    exact = screen(ok, allowed_senders=("station7@devices.example.com",), spam_action="pass")
    assert exact is None


def test_spf_and_dkim_both_failing_is_refused_even_from_an_allowed_domain() -> None:
    bad = SES_BLOCK.replace(b"Virus-Verdict: FAIL", b"Virus-Verdict: PASS").replace(b"spf=pass", b"spf=fail")
    d = screen(headers(bad + b"From: station7@devices.example.com\r\n"), allowed_senders=("devices.example.com",), spam_action="pass")
    assert d == "sender failed SPF and DKIM"


def test_recipient_domain_allowlist() -> None:
    kept, dropped = split_recipients(["ops@example.com", "x@sub.example.com", "evil@attacker.net"], ["example.com"])
    assert kept == ("ops@example.com", "x@sub.example.com") and dropped == ("evil@attacker.net",)
    assert split_recipients(["a@b.c"], []) == (("a@b.c",), ())
    assert split_recipients(["a@notexample.com"], ["example.com"]) == ((), ("a@notexample.com",))
