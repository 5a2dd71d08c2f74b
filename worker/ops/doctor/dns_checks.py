"""DNS as the world sees it (dnspython): the mail domain's MX points at SES inbound, and the DKIM
CNAMEs SES asked for resolve to its keys. The resolver is passed in: the system's by default, a
stub in tests, none against an emulator (its domain is not in public DNS)."""

from __future__ import annotations

from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from worker.ops.doctor.report import Check, fail, ok, unknown
from worker.ops.doctor.target import Target

TIMEOUT_S = 5.0


def system_resolver() -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = TIMEOUT_S
    return resolver


async def lookup(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> list[Any] | str:
    """The answer's records, or why there is none (NXDOMAIN, no answer, timeout)."""
    try:
        answer = await resolver.resolve(name, rdtype, raise_on_no_answer=True)
    except dns.resolver.NXDOMAIN:
        return f"{name} does not exist (NXDOMAIN)"
    except dns.resolver.NoAnswer:
        return f"{name} has no {rdtype} record"
    except dns.exception.Timeout:
        return f"{name} {rdtype}: no answer within {TIMEOUT_S:.0f} s"
    except dns.exception.DNSException as error:
        return f"{name} {rdtype}: {error}"
    return list(answer)


def skipped(target: Target) -> list[Check]:
    why = ("skipped: the emulator's mail domain is not in public DNS (AWS_ENDPOINT_URL is set)"
           if target.emulator else "skipped: mail domain unknown")
    return [unknown("MX", why), unknown("DKIM records", why)]


async def check_mx(resolver: dns.asyncresolver.Resolver, target: Target) -> Check:
    domain = str(target.mail_domain)
    expected = f"inbound-smtp.{target.region}.amazonaws.com"
    fix = f"publish `{domain} MX 10 {expected}` at the domain's DNS provider (the pipeline stack's MxRecord output)"
    records = await lookup(resolver, domain, "MX")
    if isinstance(records, str):
        return fail("MX", records + ": mail to the intake never reaches SES", fix)
    ranked = sorted((int(r.preference), str(r.exchange).rstrip(".").lower()) for r in records)
    shown = ", ".join(f"{p} {host}" for p, host in ranked)
    best = {host for p, host in ranked if p == ranked[0][0]}
    if best != {expected}:
        return fail("MX", f"{domain} MX {shown}: senders try {', '.join(sorted(best))} first, not {expected}", fix)
    return ok("MX", f"{domain} MX {shown}")


async def check_dkim(resolver: dns.asyncresolver.Resolver, ses: Any, target: Target) -> Check:
    domain = str(target.mail_domain)
    attrs = (await ses.get_identity_dkim_attributes(Identities=[domain]))["DkimAttributes"].get(domain, {})
    tokens = [str(t) for t in attrs.get("DkimTokens", [])]
    if not tokens:
        return fail("DKIM records", f"SES holds no DKIM tokens for {domain}",
                    f"aws ses verify-domain-dkim --domain {domain}, then publish the three CNAMEs it returns")
    wrong = []
    for token in tokens:
        name, want = f"{token}._domainkey.{domain}", f"{token}.dkim.amazonses.com"
        records = await lookup(resolver, name, "CNAME")
        got = records if isinstance(records, str) else ", ".join(str(r.target).rstrip(".") for r in records)
        if isinstance(records, str) or got.lower() != want:
            wrong.append((name, want, got))
    if wrong:
        saw = "; ".join(f"{name} → {got}" for name, _, got in wrong)
        fix = "; ".join(f"publish `{name} CNAME {want}`" for name, want, _ in wrong)
        return fail("DKIM records", f"{len(wrong)} of {len(tokens)} wrong: {saw}", fix + " (pipeline outputs DkimRecord1..3)")
    return ok("DKIM records", f"all {len(tokens)} CNAMEs of {domain} point at amazonses.com")
