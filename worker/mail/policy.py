"""Who may send, to whom, and what SES said about the email; no I/O.

SES prepends its own headers (Return-Path, Received, X-SES-Spam-Verdict, X-SES-Virus-Verdict,
Received-SPF, Authentication-Results, X-SES-RECEIPT, ...) above the sender's. Only that top block,
ending at SES's `X-SES-RECEIPT`, is trusted: a verdict or Authentication-Results header the sender
wrote itself sits below it and is ignored.

Sender authentication follows DMARC (RFC 7489). SES writes, for example:

    Authentication-Results: amazonses.com; spf=pass (spfCheck: domain of devices.example.com
     designates 54.240.8.1 as permitted sender) client-ip=54.240.8.1;
     envelope-from=station7@mail.devices.example.com; helo=a8-1.smtp-out.amazonses.com;
     dkim=pass header.i=@devices.example.com; dkim=pass header.i=@amazonses.com;
     dmarc=pass header.from=devices.example.com;

An allowlisted From is accepted with `dmarc=pass`, or, when its domain publishes no DMARC record
(`dmarc=none`), with an SPF or DKIM pass whose domain is aligned with the From domain: relaxed
alignment, the two organisational domains equal. The organisational domain is found with the Public
Suffix List bundled in `publicsuffixlist` (ICANN and private sections; no network).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from functools import lru_cache
from typing import Literal

from publicsuffixlist import PublicSuffixList

Verdict = Literal["PASS", "FAIL", "GRAY", "PROCESSING_FAILED", "DISABLED", "MISSING"]
_SES_BLOCK_END = "x-ses-receipt"
SOURCE_HEADER = "X-Sensormail-Source"  # compose.py writes it on every email the worker sends
_METHODS = frozenset({"spf", "dkim", "dmarc", "auth", "iprev", "arc", "dkim-atps", "bimi", "smime"})
ANY = "*"  # an allowlist of just this allows every recipient domain


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One result of an Authentication-Results header: `dkim=pass header.i=@example.com`."""

    method: str  # spf, dkim, dmarc, ...
    result: str  # pass, fail, none, softfail, neutral, temperror, permerror, ...
    domain: str  # what it authenticated: SPF's envelope-from (or HELO), DKIM's d=, DMARC's header.from


@dataclass(frozen=True, slots=True)
class Verdicts:
    spam: Verdict = "MISSING"
    virus: Verdict = "MISSING"
    spf: str = "missing"  # the first result of each method, from Authentication-Results
    dkim: str = "missing"
    dmarc: str = "missing"
    trusted: bool = False  # an SES header block was found
    results: tuple[AuthResult, ...] = field(default=())


def _verdict(value: str) -> Verdict:
    v = value.strip().upper()
    if v in ("PASS", "FAIL", "GRAY", "PROCESSING_FAILED", "DISABLED"):
        return v  # type: ignore[return-value]
    return "MISSING"


def ses_block(headers: Message) -> list[tuple[str, str]] | None:
    """SES's own headers (lower-case name, value), top down to X-SES-RECEIPT; None without one."""
    items = [(name.lower(), str(value)) for name, value in headers.items()]
    end = next((i for i, (name, _) in enumerate(items) if name == _SES_BLOCK_END), None)
    return None if end is None else items[:end]


def ses_verdicts(headers: Message) -> Verdicts:
    """The verdicts SES added, read only from its own block at the top of the headers."""
    block = ses_block(headers)
    if block is None:
        return Verdicts()
    found: dict[str, str] = {}
    for name, value in block:
        found.setdefault(name, value)  # the first (topmost) is SES's
    results = parse_authentication_results(found.get("authentication-results", ""))
    first = {r.method: r.result for r in reversed(results)}
    return Verdicts(
        spam=_verdict(found.get("x-ses-spam-verdict", "")),
        virus=_verdict(found.get("x-ses-virus-verdict", "")),
        spf=first.get("spf", "missing"),
        dkim=first.get("dkim", "missing"),
        dmarc=first.get("dmarc", "missing"),
        trusted=True,
        results=results,
    )


def _strip_comments(value: str) -> str:
    """RFC 5322 comments, nested ones too, removed: SES's `(spfCheck: domain of ... )`."""
    out: list[str] = []
    depth = 0
    escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            out.append(" ")
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _domain_of(value: str) -> str:
    """`user@host`, `@host` or `host` -> `host`, lower case, without quotes or a trailing dot."""
    return value.strip().strip('"<>').rpartition("@")[2].rstrip(".").lower()


def parse_authentication_results(value: str) -> tuple[AuthResult, ...]:
    """Results of one Authentication-Results header (RFC 8601), in order.

    The authserv-id comes first; each `method=result` starts a result and the `key=value` pairs after
    it (in the same `;`-separated piece, or in the pieces that follow, as SES writes `client-ip=`,
    `envelope-from=` and `helo=`) are its properties."""
    pieces = _strip_comments(" ".join(value.split())).split(";")
    results: list[AuthResult] = []
    method = result = ""
    props: dict[str, str] = {}

    def close() -> None:
        if method:
            results.append(AuthResult(method, result, _result_domain(method, props)))

    for piece in pieces[1:]:  # pieces[0] is the authserv-id (and version)
        for n, token in enumerate(piece.split()):
            key, eq, val = token.partition("=")
            if not eq:
                continue
            key = key.lower()
            if n == 0 and key in _METHODS:
                close()
                method, result, props = key, val.lower(), {}
            elif method:
                props.setdefault(key, val)
    close()
    return tuple(results)


def _result_domain(method: str, props: dict[str, str]) -> str:
    if method == "spf":
        sender = props.get("smtp.mailfrom") or props.get("envelope-from") or ""
        if not _domain_of(sender):  # a null envelope sender: SPF checked the HELO name
            sender = props.get("smtp.helo") or props.get("helo") or ""
        return _domain_of(sender)
    if method == "dkim":
        return _domain_of(props.get("header.d") or props.get("header.i") or "")
    if method == "dmarc":
        return _domain_of(props.get("header.from") or "")
    return ""


_PSL = PublicSuffixList()  # the list bundled with the package: no download, no cache on disk


@lru_cache(maxsize=4096)
def organisational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (`mail.devices.example.com` -> `example.com`).
    A domain that is itself a public suffix (or unknown to the list) is its own."""
    domain = domain.lower().rstrip(".")
    return _PSL.privatesuffix(domain) or domain


def aligned(a: str, b: str) -> bool:
    """Relaxed alignment: both domains have the same organisational domain."""
    return bool(a) and bool(b) and organisational_domain(a) == organisational_domain(b)


def authenticated(from_domain: str, verdicts: Verdicts) -> str | None:
    """Why SES's results do not authenticate the From domain, or None when they do.

    `dmarc=pass` (for this From domain); or, when the domain publishes no DMARC record
    (`dmarc=none`), an SPF or DKIM pass aligned with it. Everything else is refused."""
    if not verdicts.trusted:
        return "no SES authentication results (no X-SES-RECEIPT block)"
    dmarc = [r for r in verdicts.results if r.method == "dmarc"]
    if not dmarc:
        return "no DMARC result from SES"
    verdict = dmarc[0]
    if verdict.domain and verdict.domain != from_domain:
        return f"DMARC result is for {verdict.domain}, not the From domain {from_domain}"
    if verdict.result == "pass":
        return None
    if verdict.result == "none":
        for r in verdicts.results:
            if r.method in ("spf", "dkim") and r.result == "pass" and aligned(r.domain, from_domain):
                return None
        passes = ", ".join(f"{r.method}=pass ({r.domain or '?'})" for r in verdicts.results
                           if r.method in ("spf", "dkim") and r.result == "pass")
        return (f"no DMARC record for {from_domain} and no SPF or DKIM pass aligned with it"
                + (f": {passes}" if passes else ""))
    return f"DMARC {verdict.result} for {from_domain}"


def _matches(address: str, allowed: Sequence[str]) -> bool:
    """An entry with "@" is one address; otherwise a domain (its subdomains included); "*" is any."""
    address = address.strip().lower()
    domain = address.rpartition("@")[2]
    for entry in allowed:
        entry = entry.strip().lower()
        if entry == ANY:
            return True
        if "@" in entry:
            if address == entry:
                return True
        elif domain == entry or domain.endswith("." + entry):
            return True
    return False


def from_addresses(headers: Message) -> list[str]:
    """Every address of every From header (the sender's own headers: SES adds none)."""
    return [addr for _, addr in getaddresses([str(v) for v in headers.get_all("From", [])]) if addr]


def sender_addresses(headers: Message) -> list[str]:
    """The envelope sender (SES's Return-Path) and every From address."""
    values = [str(v) for v in headers.get_all("Return-Path", [])[:1]]
    return [addr for _, addr in getaddresses(values) if addr] + from_addresses(headers)


def screen(
    headers: Message,
    *,
    allowed_senders: Sequence[str],
    spam_action: Literal["quarantine", "pass"],
    own_addresses: Sequence[str] = (),
) -> str | None:
    """Why the email is quarantined (nothing stored, no links, fallback notice), or None.

    In order: virus FAIL; spam FAIL (as configured); a loop (our own source header, or sent by one
    of `own_addresses`, the worker's sender); DMARC fail for the From domain; and with an allowlist:
    anything but exactly one From address, a From outside the allowlist, or a From that SES's
    results do not authenticate (see `authenticated`). The envelope sender is not held to the
    allowlist: devices on SES SMTP without a custom MAIL FROM domain send as `...@amazonses.com`."""
    verdicts = ses_verdicts(headers)
    if verdicts.virus == "FAIL":
        return "virus verdict FAIL"
    if verdicts.spam == "FAIL" and spam_action == "quarantine":
        return "spam verdict FAIL"
    if headers.get(SOURCE_HEADER) is not None:
        return f"loop: the email carries our own {SOURCE_HEADER} header"
    own = {a.strip().lower() for a in own_addresses if a.strip()}
    if looped := [a for a in sender_addresses(headers) if a.lower() in own]:
        return f"loop: sent by our own address {looped[0]}"
    senders = from_addresses(headers)
    dmarc = next((r for r in verdicts.results if r.method == "dmarc"), None)
    if dmarc is not None and dmarc.result == "fail":
        return f"sender not authenticated: DMARC fail for {dmarc.domain or ', '.join(senders) or 'no From'}"
    if not allowed_senders:
        return None
    if len(senders) != 1:
        return f"sender not allowed: {len(senders)} From addresses ({', '.join(senders) or 'none'}), exactly one expected"
    sender = senders[0]
    if not _matches(sender, allowed_senders):
        return f"sender not allowed: {sender}"
    refusal = authenticated(_domain_of(sender), verdicts)
    if refusal is not None:
        return f"sender not authenticated: {sender}: {refusal}"
    return None


@dataclass(frozen=True, slots=True)
class RecipientDecision:
    kept: tuple[str, ...]
    rejected: tuple[str, ...]  # "address (why)", for the log and the notice
    reason: str | None  # why nothing is sent (the fallback), or None


def decide_recipients(
    recipients: Sequence[str],
    *,
    allowed_domains: Sequence[str],
    intake_domains: Sequence[str] = (),
    max_recipients: int,
) -> RecipientDecision:
    """Who the email may go to: at most `max_recipients` asked for (more: nobody, with the reason);
    never the intake domain (a loop); only the allowed domains (empty: none, "*": any)."""
    if len(recipients) > max_recipients:
        return RecipientDecision((), (), f"too many recipients: {len(recipients)} (at most {max_recipients})")
    kept: list[str] = []
    rejected: list[str] = []
    for address in recipients:
        if intake_domains and _matches(address, intake_domains):
            rejected.append(f"{address} (intake domain: would loop)")
        elif not _matches(address, allowed_domains):
            rejected.append(f"{address} (domain not allowed)")
        else:
            kept.append(address)
    return RecipientDecision(tuple(kept), tuple(rejected), None)


class SenderBudget:
    """At most `per_minute` emails a minute from one sender address: a token bucket per sender,
    starting full (a minute's worth may come at once), refilled continuously. `per_minute` 0: no
    budget. Pure: the caller passes the clock. Buckets that have refilled are forgotten, so memory
    follows the senders active in the last minute."""

    def __init__(self, per_minute: int, max_senders: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_senders = max_senders
        self._buckets: dict[str, tuple[float, float]] = {}  # sender -> (tokens, at)

    def take(self, sender: str, now: float) -> float | None:
        """None when the email may go now (one token taken); otherwise the seconds until it may."""
        if self.per_minute <= 0:
            return None
        key = sender.strip().lower()
        rate = self.per_minute / 60.0
        tokens, at = self._buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self.max_senders:
            self._forget_full(now)
        return None

    def _forget_full(self, now: float) -> None:
        rate = self.per_minute / 60.0
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * rate >= self.per_minute]
        for key in full:
            del self._buckets[key]
