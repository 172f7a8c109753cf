"""The service's guards, in one place: the request log (every response, errors included, and a
500 for anything unexpected), security headers, the gate that authenticates a request and
limits its body *before* any handler reads it, and the CSRF check of the reviewer pages' forms.

Order (outermost first): :class:`RequestLog` -> :class:`SecurityHeaders` -> :class:`Gate` ->
the routes. The gate reads headers only: an anonymous or oversized request is refused without
reading its body.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import Match

from riskml.feedback import FeedbackStore

log = logging.getLogger("riskml.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "riskml_session"
LOGIN_COOKIE = "riskml_login"  # CSRF token of the sign-in form (before there is a session)
SMALL_BODY = 64 * 1024  # every body but POST /score's
#: requests that change something without being signed in: the sign-in form only
ANONYMOUS_WRITES = {"/ui/login"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'{style}; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class BodyTooLarge(Exception):
    """A streamed request body passed its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit:,} bytes")
        self.limit = limit


async def _send_json(send: Send, status: int, body: dict[str, Any], headers=()) -> None:  # type: ignore[no-untyped-def]
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _problem(loc: str, msg: str, kind: str) -> dict[str, Any]:
    return {"detail": [{"loc": loc.split("."), "msg": msg, "type": kind}]}


class RequestLog:
    """Logs method, route *template* (never the path's values, the query or a token), status
    and duration of every request; turns an unexpected exception into a logged 500 with a plain
    message (and a streamed body over its limit into a 413)."""

    def __init__(self, app: ASGIApp, routes: Callable[[], list[Any]]) -> None:
        self.app, self.routes = app, routes

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:  # refused before routing: find the route it was meant for
            for candidate in self.routes():
                if candidate.matches(scope)[0] == Match.FULL:
                    route = candidate
                    break
        return getattr(route, "path", "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 500, "sent": False}

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except BodyTooLarge as exc:
            if not state["sent"]:
                await _send_json(tracked, 413, _problem("body", str(exc), "body_too_large"))
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], self._template(scope))
            if not state["sent"]:
                await _send_json(
                    tracked,
                    500,
                    {"detail": "internal error; the service log has the details"},
                )
        finally:
            status = int(state["status"])
            level = logging.ERROR if status >= 500 else logging.INFO
            log.log(
                level,
                "%s %s %s %.1f ms",
                scope["method"],
                self._template(scope),
                status,
                1000 * (time.perf_counter() - started),
            )


class SecurityHeaders:
    """Content-Security-Policy (no inline script, no framing), nosniff, no referrer, no caching
    of anything but static assets; HSTS when the deployment is TLS (``secure``)."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app, self.secure = app, secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        docs = path == "/docs" or path.startswith("/docs/")
        extra = [
            (b"content-security-policy", _CSP.format(style=" 'unsafe-inline'" if docs else "")),
            (b"x-content-type-options", "nosniff"),
            (b"x-frame-options", "DENY"),
            (b"referrer-policy", "same-origin"),  # no-referrer would make Origin "null"
            (b"cross-origin-opener-policy", "same-origin"),
        ]
        if not (path.startswith("/static/") or path.startswith("/docs/assets/")):
            extra.append((b"cache-control", "no-store"))
        if self.secure:
            extra.append((b"strict-transport-security", "max-age=31536000"))
        encoded = [(k, v.encode()) for k, v in extra]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *encoded]
            await send(message)

        await self.app(scope, receive, with_headers)


class Gate:
    """Before any handler runs: refuse a body over its limit (by ``Content-Length``, and while
    it streams), identify the caller (API: ``Authorization: Bearer``; pages: the session
    cookie) and refuse an anonymous request that would write (401, or a redirect to sign-in
    for the pages) without reading its body. The identity (and page session) go into the
    request's state for the routes' dependencies."""

    def __init__(self, app: ASGIApp, *, store: FeedbackStore, score_limit: int) -> None:
        self.app, self.store, self.score_limit = app, store, score_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = Headers(scope=scope)
        limit = self.score_limit if path == "/score" else SMALL_BODY
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _send_json(
                    send, 400, _problem("header.content-length", "not a number", "bad_header")
                )
                return
            if int(length) > limit:
                msg = f"request body of {int(length):,} bytes; at most {limit:,} here"
                await _send_json(send, 413, _problem("body", msg, "body_too_large"))
                return
        state = scope.setdefault("state", {})
        who = None
        if path.startswith("/ui/"):
            sid = Request(scope).cookies.get(SESSION_COOKIE)
            # one indexed look-up: cheaper on the loop than a hop to a worker thread
            page = self.store.session(sid) if sid else None
            state["page_session"] = page
            who = page.identity if page else None
        else:
            auth = headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if token:
                who = self.store.identify(token)
        state["identity"] = who
        if who is None and method not in SAFE_METHODS and path not in ANONYMOUS_WRITES:
            if path.startswith("/ui/"):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 303,
                        "headers": [(b"location", b"/ui/login"), (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
            else:
                await _send_json(
                    send,
                    401,
                    _problem("header.authorization", "a valid token is required", "unauthorized"),
                    [(b"www-authenticate", b"Bearer")],
                )
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


def same_origin(request: Request) -> bool:
    """True when the request comes from a page of this service: its ``Origin`` (or, without
    one, its ``Referer``) names this host; a browser's cross-site or cross-port post fails."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        # browsers send Origin with every form post; without it, trust Fetch metadata
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def csrf_ok(request: Request, expected: str | None, sent: str | None) -> bool:
    """The CSRF check of a page form: same origin, and the form's token equals the one the
    server issued (session or sign-in cookie), compared in constant time."""
    if not expected or not sent or not same_origin(request):
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())
