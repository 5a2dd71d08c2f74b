"""The outbox's JSON API under /api/v1/, shaped after Mailpit's (list, one message, its parts).

GET  /api/v1/messages?outcome=&query=&limit=   newest first: {"total", "count", "messages": [summary]}
GET  /api/v1/message/{id}                      the whole journey (see `detail`)
GET  /api/v1/message/{id}/raw                  the .eml as received (SES's headers on top)
GET  /api/v1/message/{id}/headers              its top-level headers, [[name, value], ...]
GET  /api/v1/message/{id}/links                each attachment link's state now
GET  /api/v1/message/{id}/sent/{n}/raw         what SES was given to send (n from 0)
GET  /api/v1/message/{id}/sent/{n}/html        its html, to be framed: scripts and remote loads refused
GET  /api/v1/message/{id}/notice               the fallback notice as published
POST /api/v1/message/{id}/revoke               what `sensormail revoke` does for that email
GET  /api/v1/events                            server-sent events: one `message` summary per change
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from aiohttp import web

from worker.local.context import OUTBOX, Outbox, entry_or_404, fetch_raw
from worker.local.journal import OUTCOMES, Entry
from worker.local.linkcheck import check_link
from worker.local.parts import header_block, notice_json, sent_view
from worker.ops.revoke import revoke

routes = web.RouteTableDef()
KEEPALIVE_S = 15.0
# The sent html may style itself and show inline data: images; nothing else, no scripts at all.
FRAMED_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def summary(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "seq": entry.seq,
        "time": _iso(entry.time),
        "sender": entry.sender or entry.envelope_from,
        "subject": entry.subject,
        "outcome": entry.status,
        "reason": entry.reason,
        "recipients": len(entry.recipients),
        "attachments": len(entry.attachments),
        "size": entry.size,
        "duplicate_of": entry.duplicate_of,
        "emails_sent": len(entry.sent),  # as read back from the emulator's SES
        "notice_published": entry.notice is not None,
        "version": entry.version,
    }


def detail(entry: Entry) -> dict[str, Any]:
    base = f"/api/v1/message/{entry.id}"
    sent = []
    for n, raw in enumerate(entry.sent):
        view = sent_view(raw)
        sent.append({
            "to": list(view.to), "subject": view.header("Subject"), "headers": [list(h) for h in view.headers],
            "text": view.text, "html": view.html is not None, "html_url": f"{base}/sent/{n}/html",
            "raw_url": f"{base}/sent/{n}/raw", "raw": raw,
        })
    total = None
    if entry.received_at is not None and entry.handled_at is not None:
        total = round((entry.handled_at - entry.received_at).total_seconds(), 3)
    return {
        **summary(entry),
        "source_id": entry.source_id,
        "received_at": _iso(entry.received_at),
        "handled_at": _iso(entry.handled_at),
        "envelope_from": entry.envelope_from,
        "raw_email": f"s3://{entry.bucket}/{entry.key}" if entry.key else None,
        "raw_url": f"{base}/raw",
        "recipients": list(entry.recipients),
        "dropped": [{"address": a, "reason": r} for a, r in entry.dropped],
        "attachments": [
            {"n": a.n, "filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256,
             "url": a.url, "key": a.key, "expires_at": _iso(a.expires_at)}
            for a in entry.attachments
        ],
        "sent": sent,
        "notice": notice_json(entry.notice),
        "dlq": {"reason": entry.reason, "body": entry.dlq_body} if entry.status == "dlq" else None,
        "timings": [{"step": step, "seconds": seconds} for step, seconds in entry.timings],
        "end_to_end_s": total,
        "revoked_at": _iso(entry.revoked_at),
    }


@routes.get("/api/v1/messages")
async def list_messages(request: web.Request) -> web.Response:
    outbox = request.app[OUTBOX]
    outcome = request.query.get("outcome") or None
    if outcome is not None and outcome not in (*OUTCOMES, "received"):
        raise web.HTTPBadRequest(text=f"outcome must be one of {', '.join(OUTCOMES)}, received")
    found = outbox.journal.entries(outcome, request.query.get("query"))
    limit = int(request.query.get("limit", "500")) if request.query.get("limit", "500").isdigit() else 500
    return web.json_response({"total": len(found), "count": min(limit, len(found)),
                              "version": outbox.journal.version, "messages": [summary(e) for e in found[:limit]]})


@routes.get("/api/v1/message/{id}")
async def one_message(request: web.Request) -> web.Response:
    return web.json_response(detail(entry_or_404(request)))


@routes.get("/api/v1/message/{id}/raw")
async def raw_email(request: web.Request) -> web.Response:
    entry = entry_or_404(request)
    raw = await fetch_raw(request.app[OUTBOX], entry)
    return web.Response(body=raw, content_type="message/rfc822",
                        headers={"Content-Disposition": f'attachment; filename="{entry.source_id}.eml"'})


@routes.get("/api/v1/message/{id}/headers")
async def headers(request: web.Request) -> web.Response:
    raw = await fetch_raw(request.app[OUTBOX], entry_or_404(request))
    return web.json_response([list(h) for h in header_block(raw)])


async def link_states(outbox: Outbox, entry: Entry) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = [{} for _ in entry.attachments]

    async def one(i: int) -> None:
        link = entry.attachments[i]
        status = await check_link(outbox.http, link.url)
        states[i] = {"filename": link.filename, "url": link.url, **status.as_json()}

    async with anyio.create_task_group() as tg:
        for i in range(len(entry.attachments)):
            tg.start_soon(one, i)
    return states


@routes.get("/api/v1/message/{id}/links")
async def links(request: web.Request) -> web.Response:
    return web.json_response(await link_states(request.app[OUTBOX], entry_or_404(request)))


def _sent(request: web.Request) -> str:
    entry, n = entry_or_404(request), request.match_info["n"]
    if not n.isdigit() or int(n) >= len(entry.sent):
        raise web.HTTPNotFound(text=f"{entry.id} has {len(entry.sent)} sent emails")
    return entry.sent[int(n)]


@routes.get("/api/v1/message/{id}/sent/{n}/raw")
async def sent_raw(request: web.Request) -> web.Response:
    return web.Response(text=_sent(request), content_type="text/plain", charset="utf-8")


@routes.get("/api/v1/message/{id}/sent/{n}/html")
async def sent_html(request: web.Request) -> web.Response:
    html = sent_view(_sent(request)).html
    if html is None:
        raise web.HTTPNotFound(text="this email has no html part")
    return web.Response(text=html, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": FRAMED_CSP, "X-Frame-Options": "SAMEORIGIN"})


@routes.get("/api/v1/message/{id}/notice")
async def notice(request: web.Request) -> web.Response:
    entry = entry_or_404(request)
    if entry.notice is None:
        raise web.HTTPNotFound(text="no fallback notice was published for this email")
    return web.Response(text=entry.notice, content_type="application/json")


@routes.post("/api/v1/message/{id}/revoke")
async def revoke_links(request: web.Request) -> web.Response:
    outbox, entry = request.app[OUTBOX], entry_or_404(request)
    try:
        moved = await revoke(outbox.s3, outbox.attachments_bucket, outbox.attachments_prefix,
                             message_id=entry.source_id)
    except ValueError as error:  # nothing stored for it
        raise web.HTTPConflict(text=str(error)) from error
    outbox.journal.revoked(entry.id)
    return web.json_response({"revoked": moved, "links": await link_states(outbox, entry)})


@routes.get("/api/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    journal = request.app[OUTBOX].journal
    since = request.query.get("since", "")
    seen = int(since) if since.isdigit() else journal.version
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(b": connected\n\n")
    while not journal.closed:
        if not await journal.wait(seen, KEEPALIVE_S):
            await response.write(b": keep-alive\n\n")
            continue
        current = journal.version  # what follows is read at once: later changes come next time
        for entry in journal.changed_since(seen):
            await response.write(f"event: message\ndata: {json.dumps(summary(entry))}\n\n".encode())
        seen = current
    return response
