"""The outbox page of `sensormail local`: every email's journey, live, on http://127.0.0.1:8025.

aiohttp's server (aiobotocore brings aiohttp), Jinja2 templates, a little plain JavaScript; the
JSON API is in `api.py`. It binds 127.0.0.1 only and answers only to that host name or
`localhost` (a web page elsewhere cannot reach it through DNS rebinding), and a POST needs the
`X-Sensormail-Outbox` header, which no other site's page can send without a CORS preflight that
this server never grants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from botocore.exceptions import ClientError

from worker.local import api
from worker.local.context import OUTBOX, Outbox, entry_or_404, fetch_raw
from worker.local.journal import OUTCOMES
from worker.local.parts import header_block
from worker.mail.compose import human_size

HOST = "127.0.0.1"
DEFAULT_PORT = 8025  # Mailpit's and MailHog's
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
POST_HEADER = "X-Sensormail-Outbox"
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("worker.local", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)
TEMPLATES.filters["size"] = lambda n: human_size(n) if isinstance(n, int) else "?"


class OutboxUnavailable(RuntimeError):
    """The page cannot listen where it was asked to; the message is one line for the user."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.host.rsplit(":", 1)[0] not in (HOST, "localhost"):
        raise web.HTTPForbidden(text="the outbox answers on 127.0.0.1 only")
    if request.method == "POST" and request.headers.get(POST_HEADER) != "1":
        raise web.HTTPForbidden(text=f"a POST needs the {POST_HEADER}: 1 header")
    response = await handler(request)
    if not response.prepared:  # the event stream has sent its headers already
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")  # links carry signatures
    return response


def _render(name: str, outbox: Outbox, **context: Any) -> web.Response:
    page = TEMPLATES.get_template(name).render(mode=outbox.mode, emulator=outbox.emulator, **context)
    return web.Response(text=page, content_type="text/html", charset="utf-8")


async def index(request: web.Request) -> web.Response:
    outbox = request.app[OUTBOX]
    outcome, query = request.query.get("outcome", ""), request.query.get("query", "")
    entries = outbox.journal.entries(outcome or None, query or None)
    return _render("index.html", outbox, messages=[api.summary(e) for e in entries], outcomes=OUTCOMES,
                   outcome=outcome, query=query, version=outbox.journal.version)


async def message(request: web.Request) -> web.Response:
    outbox = request.app[OUTBOX]
    entry = entry_or_404(request)
    try:
        received = header_block(await fetch_raw(outbox, entry))
        unreadable = None
    except web.HTTPNotFound as error:
        received, unreadable = (), error.text
    except ClientError as error:
        received, unreadable = (), str(error)
    links = await api.link_states(outbox, entry)
    return _render("message.html", outbox, m=api.detail(entry), links=links, received=received, unreadable=unreadable)


def make_app(outbox: Outbox) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[OUTBOX] = outbox
    app.router.add_get("/", index)
    app.router.add_get("/message/{id}", message)
    app.router.add_routes(api.routes)
    app.router.add_static("/static", Path(str(package_files.files("worker.local") / "static")))
    return app


@asynccontextmanager
async def serve_web(outbox: Outbox, port: int, host: str = HOST) -> AsyncIterator[str]:
    """Serves the page until the block ends; yields its address."""
    runner = web.AppRunner(make_app(outbox), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            raise OutboxUnavailable(f"the outbox page cannot listen on {host}:{port} ({error.strerror or error}); "
                                    "choose another port with --web-port, or 0 to turn it off") from error
        bound = runner.addresses[0][1]
        yield f"http://{host}:{bound}/"
    finally:
        outbox.journal.close()  # ends the event streams, so the clean-up does not wait for them
        await runner.cleanup()
