"""SES identities and the account: the mail domain (verified, DKIM), the sender, the sandbox and
quota, the suppression list, custom MAIL FROM of the device domains.

Identities are read with SES v1 (`GetIdentity*Attributes`, one call for many); the account and the
suppression list exist only in SESv2 (`GetAccount`, `ListSuppressedDestinations`).
"""

from __future__ import annotations

from typing import Any

from worker.ops.doctor.report import Check, brief, fail, ok, unknown
from worker.ops.doctor.target import Target

SUPPRESSION_PAGES = 10  # at most 10 x 1000 suppressed addresses are read


async def verification(ses: Any, identities: list[str]) -> dict[str, str]:
    """identity -> VerificationStatus (Success, Pending, Failed, TemporaryFailure); absent: never requested."""
    if not identities:
        return {}
    attrs = (await ses.get_identity_verification_attributes(Identities=identities))["VerificationAttributes"]
    return {k: str(v.get("VerificationStatus", "")) for k, v in attrs.items()}


async def check_domain(ses: Any, target: Target) -> Check:
    title = "mail domain identity"
    domain = target.mail_domain
    if not domain:
        return unknown(title, "mail domain unknown (no intake address: SENSORMAIL_INTAKE_ADDRESS, the receipt "
                              "rule or --pipeline-stack)", needed=True)
    status = (await verification(ses, [domain])).get(domain)
    dkim = (await ses.get_identity_dkim_attributes(Identities=[domain]))["DkimAttributes"].get(domain, {})
    dkim_status = dkim.get("DkimVerificationStatus", "NotStarted")
    saw = f"{domain}: verification {status or 'not requested'}, DKIM {dkim_status}"
    if status is None:
        return fail(title, saw, f"aws sesv2 create-email-identity --email-identity {domain} (or deploy the "
                                "pipeline stack with CreateDomainIdentity=true), then publish its DKIM records")
    if status != "Success" or dkim_status != "Success":
        return fail(title, saw, "publish the three DKIM CNAME records (pipeline stack outputs DkimRecord1..3; "
                                "see the DNS checks below) and wait for SES to see them (minutes to an hour)")
    return ok(title, saw)


async def check_sender(ses: Any, target: Target) -> Check:
    title = "sender identity"
    if not target.sender:
        return unknown(title, "no sender configured (SENSORMAIL_SENDER or --service-stack)", needed=True)
    domain = target.sender.rsplit("@", 1)[-1]
    found = await verification(ses, [target.sender, domain])
    if "Success" in (found.get(target.sender), found.get(domain)):
        via = "as an address" if found.get(target.sender) == "Success" else f"through its domain {domain}"
        return ok(title, f"{target.sender} verified {via}")
    saw = (f"{target.sender}: {found.get(target.sender) or 'not requested'}, domain {domain}: "
           f"{found.get(domain) or 'not requested'}; SES refuses sends from it (554 Email address is not verified)")
    if found.get(target.sender) == "Pending":
        return fail(title, saw, f"click the link SES sent to {target.sender} (resend: aws ses verify-email-identity "
                                f"--email-address {target.sender})")
    return fail(title, saw, f"aws sesv2 create-email-identity --email-identity {target.sender} and click the link "
                            f"SES sends, or verify the domain: aws sesv2 create-email-identity --email-identity {domain}")


async def check_account(sesv2: Any, ses: Any, target: Target) -> Check:
    """Sandbox and quota (SESv2 GetAccount); in the sandbox, which recipients are not verified."""
    title = "SES account"
    try:
        account = await sesv2.get_account()
    except Exception as error:
        quota = ""
        try:
            q = await ses.get_send_quota()
            quota = f"; quota {q['SentLast24Hours']:.0f} of {q['Max24HourSend']:.0f} sent in 24 h, {q['MaxSendRate']:.0f}/s"
        except Exception:
            pass
        return unknown(title, f"sandbox status unreadable ({brief(error)}){quota}")
    q = account.get("SendQuota", {})
    sent, most = float(q.get("SentLast24Hours", 0)), float(q.get("Max24HourSend", 0))
    quota = f"quota {sent:.0f} of {most:.0f} sent in 24 h, {float(q.get('MaxSendRate', 0)):.0f}/s"
    if not account.get("SendingEnabled", True):
        return fail(title, f"sending is disabled for the account ({account.get('EnforcementStatus', '')}); {quota}",
                    "SES console → Account dashboard: read the notice and appeal; `sensormail resume` does not help")
    if most and sent >= most:
        return fail(title, f"the 24-hour quota is used up; {quota}",
                    "wait for the 24-hour window, or request a higher quota: Service Quotas → Amazon SES → Sending quota")
    if account.get("ProductionAccessEnabled", False):
        return ok(title, f"production access; {quota}")
    sandbox = "in the sandbox: SES sends only to verified addresses"
    production = "request production access: SES console → Account dashboard → Request production access"
    if not target.recipients:
        return unknown(title, f"{sandbox} (give --recipient to check yours); {quota}", production)
    found = await verification(ses, [*target.recipients, *{r.rsplit('@', 1)[-1] for r in target.recipients}])
    missing = [r for r in target.recipients
               if "Success" not in (found.get(r), found.get(r.rsplit("@", 1)[-1]))]
    if missing:
        commands = "; ".join(f"aws sesv2 create-email-identity --email-identity {r}" for r in missing)
        return fail(title, f"{sandbox}; not verified: {', '.join(missing)}; {quota}",
                    f"{commands} (each clicks the link SES sends), or {production}")
    return ok(title, f"{sandbox}; every recipient given is verified; {quota}")


async def suppressed(sesv2: Any) -> dict[str, str]:
    """address -> reason (BOUNCE, COMPLAINT) from the account's suppression list."""
    found: dict[str, str] = {}
    token: str | None = None
    for _ in range(SUPPRESSION_PAGES):
        page = await sesv2.list_suppressed_destinations(PageSize=1000, **({"NextToken": token} if token else {}))
        for item in page.get("SuppressedDestinationSummaries", []):
            found[str(item["EmailAddress"]).lower()] = str(item.get("Reason", ""))
        token = page.get("NextToken")
        if not token:
            break
    return found


async def check_suppression(sesv2: Any, target: Target) -> Check:
    title = "suppression list"
    try:
        listed = await suppressed(sesv2)
    except Exception as error:
        return unknown(title, f"unreadable ({brief(error)}); the worker still skips suppressed recipients")
    given = [r for r in target.recipients if r.lower() in listed]
    domains = target.allowed_recipient_domains
    relevant = {a: r for a, r in listed.items() if not domains or a.rsplit("@", 1)[-1] in domains}
    scope = f"in {', '.join(domains)}" if domains else "account-wide"
    if given:
        return fail(title, "suppressed, SES will not send to: " + ", ".join(f"{a} ({listed[a.lower()]})" for a in given),
                    "; ".join(f"aws sesv2 delete-suppressed-destination --email-address {a}" for a in given)
                    + " (only once the address accepts mail again)")
    if relevant:
        sample = ", ".join(f"{a} ({r})" for a, r in sorted(relevant.items())[:5])
        return unknown(title, f"{len(relevant)} suppressed {scope}, e.g. {sample}; emails to them are skipped",
                       "aws sesv2 delete-suppressed-destination --email-address ADDRESS, once it accepts mail again")
    return ok(title, f"no suppressed address {scope} ({len(listed)} in the list)", needed=False)


async def check_mail_from(ses: Any, target: Target) -> Check:
    title = "custom MAIL FROM"
    if not target.device_domains:
        return unknown(title, "skipped: no device domain known (SENSORMAIL_ALLOWED_SENDERS, the service stack's "
                              "AllowedSenders, or --test-from)")
    attrs = (await ses.get_identity_mail_from_domain_attributes(Identities=list(target.device_domains)))
    seen, bad, unset = [], [], []
    for domain in target.device_domains:
        a = attrs["MailFromDomainAttributes"].get(domain, {})
        status = a.get("MailFromDomainStatus")
        if not a.get("MailFromDomain"):
            unset.append(domain)
            seen.append(f"{domain}: none")
        else:
            seen.append(f"{domain}: {a['MailFromDomain']} {status}")
            if status != "Success":
                bad.append((domain, str(a["MailFromDomain"])))
    if bad:
        domain, mail_from = bad[0]
        return fail(title, "; ".join(seen),
                    f"publish `{mail_from} MX 10 feedback-smtp.{target.region}.amazonses.com` and "
                    f"`{mail_from} TXT \"v=spf1 include:amazonses.com ~all\"`, then wait for SES", needed=False)
    if unset:
        d = unset[0]
        return unknown(title, "; ".join(seen) + " (SPF then aligns with amazonses.com, DMARC relies on DKIM alone)",
                       f"aws sesv2 put-email-identity-mail-from-attributes --email-identity {d} "
                       f"--mail-from-domain bounce.{d}, then its MX and TXT records")
    return ok(title, "; ".join(seen), needed=False)
