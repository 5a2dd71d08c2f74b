"""worker/mail/policy.py: SES's verdicts, sender authentication (DMARC and aligned SPF/DKIM), the
loop guard, recipient decisions and the per-sender budget. Headers in SES's real format: the
`Authentication-Results` SES writes on received email (`spf=... (spfCheck: ...) client-ip=...;
envelope-from=...; helo=...; dkim=... header.i=@...; dmarc=... header.from=...;`)."""

from __future__ import annotations

from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest

from tests.helpers import ses_block, ses_smtp_block
from worker.mail.policy import (
    AuthResult,
    SenderBudget,
    aligned,
    decide_recipients,
    organisational_domain,
    parse_authentication_results,
    screen,
    ses_verdicts,
)

DEVICES = ("devices.example.com",)
OURS = "alerts@sensors.example.com"


def headers(raw: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(raw + b"\r\n")


def email(block: bytes, sender: str = "Pump Station 7 <station7@devices.example.com>", extra: bytes = b"") -> Message:
    return headers(block + extra + f"From: {sender}\r\nTo: intake-7f3k@sensors.example.com\r\nSubject: s\r\n".encode())


def decide(msg: Message, allowed: tuple[str, ...] = DEVICES) -> str | None:
    return screen(msg, allowed_senders=allowed, spam_action="quarantine", own_addresses=(OURS,))


# --- SES's block and its results ---------------------------------------------------------------

def test_authentication_results_as_ses_writes_them() -> None:
    """The shape of a real SES header (comments, SES's client-ip/envelope-from/helo pieces)."""
    value = (
        "amazonses.com; spf=pass (spfCheck: domain of _spf.google.com designates 209.85.217.47 as permitted"
        " sender) client-ip=209.85.217.47; envelope-from=someone@gmail.com; helo=mail-vs1-f47.google.com;"
        " dkim=pass header.i=@gmail.com; dmarc=pass header.from=gmail.com;"
    )
    assert parse_authentication_results(value) == (
        AuthResult("spf", "pass", "gmail.com"),
        AuthResult("dkim", "pass", "gmail.com"),
        AuthResult("dmarc", "pass", "gmail.com"),
    )


def test_a_comment_cannot_smuggle_a_result() -> None:
    value = "amazonses.com; spf=fail (dmarc=pass header.from=devices.example.com) envelope-from=a@b.example; dmarc=fail header.from=devices.example.com"
    assert [r.method + "=" + r.result for r in parse_authentication_results(value)] == ["spf=fail", "dmarc=fail"]


def test_verdicts_come_from_the_ses_block() -> None:
    v = ses_verdicts(email(ses_block(virus="FAIL", dkim=(("fail", "devices.example.com"),), dmarc="none")))
    assert (v.spam, v.virus, v.spf, v.dkim, v.dmarc, v.trusted) == ("PASS", "FAIL", "pass", "fail", "none", True)


def test_a_forged_verdict_below_the_ses_block_is_ignored() -> None:
    forged = email(ses_block(virus="FAIL"), extra=b"X-SES-Virus-Verdict: PASS\r\n")
    assert ses_verdicts(forged).virus == "FAIL"
    assert screen(forged, allowed_senders=(), spam_action="pass") == "virus verdict FAIL"


def test_forged_verdicts_without_an_ses_block_are_not_trusted() -> None:
    only_forged = headers(b"X-SES-Virus-Verdict: PASS\r\nX-SES-Spam-Verdict: PASS\r\nFrom: a@x.com\r\n")
    v = ses_verdicts(only_forged)
    assert (v.trusted, v.virus, v.spam) == (False, "MISSING", "MISSING")
    assert decide(only_forged, ("x.com",)) is not None


def test_spam_fail_is_configurable() -> None:
    spam = email(ses_block(spam="FAIL"))
    assert screen(spam, allowed_senders=(), spam_action="quarantine") == "spam verdict FAIL"
    assert screen(spam, allowed_senders=(), spam_action="pass") is None


# --- forged senders (issue 13) ------------------------------------------------------------------

def test_a_forged_allowlisted_sender_is_quarantined() -> None:
    """From and Return-Path in the allowed domain, SES says spf=fail, dkim=none, dmarc=fail: it was
    forwarded before (only SPF fail *and* DKIM fail was refused)."""
    forged = email(ses_block(spf="fail", dkim=(), dmarc="fail"))
    reason = decide(forged)
    assert reason is not None and reason.startswith("sender not authenticated") and "DMARC fail" in reason


def test_a_forged_sender_of_a_domain_without_dmarc_is_quarantined() -> None:
    """dmarc=none (no record), SPF fails, no signature: nothing authenticates the From domain."""
    forged = email(ses_block(spf="softfail", dkim=(), dmarc="none"))
    reason = decide(forged)
    assert reason is not None and "no SPF or DKIM pass aligned" in reason


def test_the_senders_own_authentication_results_below_the_block_are_ignored() -> None:
    fake = b"Authentication-Results: amazonses.com; spf=pass envelope-from=a@devices.example.com; dkim=pass header.i=@devices.example.com; dmarc=pass header.from=devices.example.com;\r\n"
    forged = email(ses_block(spf="fail", dkim=(), dmarc="fail"), extra=fake)
    assert decide(forged) is not None


def test_a_pass_for_another_domain_does_not_authenticate_the_from_domain() -> None:
    """An attacker's own domain passes SPF and DKIM; the From claims the device domain."""
    forged = email(ses_block(envelope_from="x@attacker.example", dkim=(("pass", "attacker.example"),), dmarc="none"))
    reason = decide(forged)
    assert reason is not None and "not authenticated" in reason and "attacker.example" in reason


def test_dmarc_pass_for_a_different_from_domain_is_refused() -> None:
    two = email(ses_block(dmarc_from="attacker.example"))
    reason = decide(two)
    assert reason is not None and "not the From domain" in reason


def test_more_than_one_from_address_is_refused() -> None:
    msg = headers(ses_block() + b"From: station7@devices.example.com\r\nFrom: ceo@bank.example\r\n")
    reason = decide(msg)
    assert reason is not None and "exactly one" in reason


def test_a_from_outside_the_allowlist_is_quarantined() -> None:
    reason = decide(email(ses_block(dmarc_from="bank.example"), sender="ceo@bank.example"))
    assert reason == "sender not allowed: ceo@bank.example"
    assert decide(email(ses_block()), ("station7@devices.example.com",)) is None
    assert decide(email(ses_block()), ("other@devices.example.com",)) == "sender not allowed: station7@devices.example.com"


def test_dmarc_fail_is_quarantined_even_without_an_allowlist() -> None:
    assert screen(email(ses_block(spf="fail", dkim=(), dmarc="fail")), allowed_senders=(), spam_action="pass") is not None
    assert screen(email(ses_block(dmarc="none", dkim=())), allowed_senders=(), spam_action="pass") is None


# --- devices on SES SMTP (deploy/sending.yaml) ----------------------------------------------------

def ses_smtp(*, custom_mail_from: bool, easy_dkim: bool, dmarc: str = "none") -> Message:
    return email(ses_smtp_block(custom_mail_from=custom_mail_from, easy_dkim=easy_dkim, dmarc=dmarc))


def test_a_device_on_ses_smtp_with_easy_dkim_is_accepted_without_a_custom_mail_from() -> None:
    """Return-Path at amazonses.com: quarantined before (the envelope was held to the allowlist)."""
    assert decide(ses_smtp(custom_mail_from=False, easy_dkim=True)) is None
    assert decide(ses_smtp(custom_mail_from=False, easy_dkim=True, dmarc="pass")) is None


def test_a_device_on_ses_smtp_with_a_custom_mail_from_is_accepted_by_aligned_spf() -> None:
    assert decide(ses_smtp(custom_mail_from=True, easy_dkim=False)) is None
    assert decide(ses_smtp(custom_mail_from=True, easy_dkim=True)) is None


def test_a_device_on_ses_smtp_with_neither_is_quarantined() -> None:
    """Only amazonses.com passes, which is not the device's domain."""
    reason = decide(ses_smtp(custom_mail_from=False, easy_dkim=False))
    assert reason is not None and "no SPF or DKIM pass aligned" in reason and "amazonses.com" in reason


def test_allowlisting_amazonses_com_does_not_let_other_ses_customers_in() -> None:
    other = email(ses_block(envelope_from="x-bounce@amazonses.com", dkim=(("pass", "shop.example"),), dmarc_from="shop.example"),
                  sender="deals@shop.example")
    assert decide(other, DEVICES + ("amazonses.com",)) == "sender not allowed: deals@shop.example"


# --- alignment --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("a", "b", "ok"),
    [
        ("mail.devices.example.com", "devices.example.com", True),
        ("devices.example.com", "DEVICES.example.com", True),
        ("amazonses.com", "devices.example.com", False),
        ("eu-west-1.amazonses.com", "amazonses.com", True),
        ("a.example.co.uk", "b.example.co.uk", True),
        ("example.co.uk", "other.co.uk", False),
        ("alice.github.io", "bob.github.io", False),  # the PSL's private section: separate owners
        ("", "devices.example.com", False),
    ],
)
def test_relaxed_alignment_uses_the_public_suffix_list(a: str, b: str, ok: bool) -> None:
    assert aligned(a, b) is ok


def test_organisational_domain() -> None:
    assert organisational_domain("mail.devices.example.com") == "example.com"
    assert organisational_domain("co.uk") == "co.uk"


# --- the loop guard -----------------------------------------------------------------------------

def test_our_own_output_is_quarantined_as_a_loop() -> None:
    ours = email(ses_block(), extra=b"Auto-Submitted: auto-generated\r\nX-Sensormail-Source: 0123abc\r\n")
    assert decide(ours) == "loop: the email carries our own X-Sensormail-Source header"
    assert screen(ours, allowed_senders=(), spam_action="pass") is not None


def test_an_email_from_our_sender_address_is_quarantined_as_a_loop() -> None:
    msg = email(ses_block(dmarc_from="sensors.example.com"), sender=f"Alerts <{OURS.upper()}>")
    assert decide(msg, ()) == f"loop: sent by our own address {OURS.upper()}"


# --- recipients ----------------------------------------------------------------------------------

def test_recipient_domain_allowlist() -> None:
    d = decide_recipients(["ops@example.com", "x@sub.example.com", "evil@attacker.net"],
                          allowed_domains=["example.com"], max_recipients=50)
    assert d.kept == ("ops@example.com", "x@sub.example.com") and d.rejected == ("evil@attacker.net (domain not allowed)",)
    assert decide_recipients(["a@notexample.com"], allowed_domains=["example.com"], max_recipients=50).kept == ()


def test_no_allowlist_allows_nobody_and_star_allows_anyone() -> None:
    assert decide_recipients(["a@b.example"], allowed_domains=[], max_recipients=50).kept == ()
    assert decide_recipients(["a@b.example"], allowed_domains=["*"], max_recipients=50).kept == ("a@b.example",)


def test_seventy_thousand_recipients_send_nothing() -> None:
    many = [f"user{n}@example.com" for n in range(70_000)]
    d = decide_recipients(many, allowed_domains=["example.com"], max_recipients=50)
    assert d.kept == () and d.reason == "too many recipients: 70000 (at most 50)"
    assert decide_recipients(many[:50], allowed_domains=["example.com"], max_recipients=50).kept == tuple(many[:50])
    assert decide_recipients(many[:51], allowed_domains=["*"], max_recipients=50).reason is not None


def test_the_intake_domain_is_never_a_recipient() -> None:
    d = decide_recipients(["intake-7f3k@sensors.example.com", "x@relay.sensors.example.com", "ops@example.com"],
                          allowed_domains=["*"], intake_domains=["sensors.example.com"], max_recipients=50)
    assert d.kept == ("ops@example.com",)
    assert d.rejected == ("intake-7f3k@sensors.example.com (intake domain: would loop)",
                          "x@relay.sensors.example.com (intake domain: would loop)")


# --- the per-sender budget ------------------------------------------------------------------------

def test_sender_budget() -> None:
    budget = SenderBudget(60)
    assert all(budget.take("station7@devices.example.com", 0.0) is None for _ in range(60))
    wait = budget.take("Station7@Devices.Example.com", 0.0)  # the same sender, any case
    assert wait is not None and 0.9 < wait <= 1.0
    assert budget.take("station9@devices.example.com", 0.0) is None  # each sender has its own
    assert budget.take("station7@devices.example.com", 1.0) is None  # a second later, one more
    assert budget.take("station7@devices.example.com", 1.0) is not None
    assert budget.take("station7@devices.example.com", 61.0) is None


def test_sender_budget_zero_is_no_budget_and_memory_is_bounded() -> None:
    assert all(SenderBudget(0).take("a@b.example", 0.0) is None for _ in range(1000))
    budget = SenderBudget(60, max_senders=100)
    for n in range(1000):
        budget.take(f"s{n}@b.example", float(n * 60))  # each bucket is full again a minute later
    assert len(budget._buckets) <= 101
