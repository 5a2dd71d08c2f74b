"""Who may send, to whom, and what SES said about the email; no I/O.

SES prepends its own headers (Return-Path, Received, X-SES-Spam-Verdict, X-SES-Virus-Verdict,
Received-SPF, Authentication-Results, X-SES-RECEIPT, ...) above the sender's. Only that top block,
ending at SES's `X-SES-RECEIPT`, is trusted: a verdict header the sender wrote itself sits below it
and is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses
from typing import Literal

Verdict = Literal["PASS", "FAIL", "GRAY", "PROCESSING_FAILED", "DISABLED", "MISSING"]
_SES_BLOCK_END = "x-ses-receipt"
_AUTH_RESULT = re.compile(r"\b(spf|dkim|dmarc)=(\w+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Verdicts:
    spam: Verdict = "MISSING"
    virus: Verdict = "MISSING"
    spf: str = "missing"  # from Authentication-Results: pass, fail, softfail, none, ...
    dkim: str = "missing"
    dmarc: str = "missing"
    trusted: bool = False  # an SES header block was found


def _verdict(value: str) -> Verdict:
    v = value.strip().upper()
    if v in ("PASS", "FAIL", "GRAY", "PROCESSING_FAILED", "DISABLED"):
        return v  # type: ignore[return-value]
    return "MISSING"


def ses_verdicts(headers: Message) -> Verdicts:
    """The verdicts SES added, read only from its own block at the top of the headers."""
    items = [(name.lower(), str(value)) for name, value in headers.items()]
    end = next((i for i, (name, _) in enumerate(items) if name == _SES_BLOCK_END), None)
    if end is None:
        return Verdicts()
    found: dict[str, str] = {}
    for name, value in items[:end]:
        found.setdefault(name, value)  # the first (topmost) is SES's
    auth = {k.lower(): v.lower() for k, v in _AUTH_RESULT.findall(found.get("authentication-results", ""))}
    return Verdicts(
        spam=_verdict(found.get("x-ses-spam-verdict", "")),
        virus=_verdict(found.get("x-ses-virus-verdict", "")),
        spf=auth.get("spf", "missing"),
        dkim=auth.get("dkim", "missing"),
        dmarc=auth.get("dmarc", "missing"),
        trusted=True,
    )


def _matches(address: str, allowed: Sequence[str]) -> bool:
    """An entry with "@" is one address; otherwise a domain (its subdomains included)."""
    address = address.strip().lower()
    domain = address.rpartition("@")[2]
    for entry in allowed:
        entry = entry.strip().lower()
        if "@" in entry:
            if address == entry:
                return True
        elif domain == entry or domain.endswith("." + entry):
            return True
    return False


def sender_addresses(headers: Message) -> list[str]:
    """The envelope sender (SES's Return-Path) and every From address."""
    values = [str(v) for v in headers.get_all("Return-Path", [])[:1]] + [str(v) for v in headers.get_all("From", [])]
    return [addr for _, addr in getaddresses(values) if addr]


def screen(
    headers: Message,
    *,
    allowed_senders: Sequence[str],
    spam_action: Literal["quarantine", "pass"],
) -> str | None:
    """Why the email is quarantined (nothing stored, no links, fallback notice), or None.

    Virus FAIL: quarantined. Spam FAIL: as configured. A sender outside the allowlist, or one whose
    SPF and DKIM both failed: quarantined."""
    verdicts = ses_verdicts(headers)
    if verdicts.virus == "FAIL":
        return "virus verdict FAIL"
    if verdicts.spam == "FAIL" and spam_action == "quarantine":
        return "spam verdict FAIL"
    if allowed_senders:
        senders = sender_addresses(headers)
        if not senders or not all(_matches(s, allowed_senders) for s in senders):
            return f"sender not allowed: {', '.join(senders) or 'none'}"
        if verdicts.spf in ("fail", "softfail") and verdicts.dkim == "fail":
            return "sender failed SPF and DKIM"
    return None


def split_recipients(recipients: Sequence[str], allowed_domains: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kept, dropped) by the recipient domain allowlist; an empty allowlist keeps everyone."""
    if not allowed_domains:
        return tuple(recipients), ()
    kept = tuple(r for r in recipients if _matches(r, allowed_domains))
    return kept, tuple(r for r in recipients if r not in kept)
