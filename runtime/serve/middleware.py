"""Pure ASGI middleware (no BaseHTTPMiddleware: it would hide the client's disconnect from the routes).

Outermost first: request metrics → CORS → API key → payload limit → the app.
"""

from __future__ import annotations

import hmac
import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_sent.runtime.serve.errors import CLIENT_CLOSED, error_response
from edge_sent.runtime.serve.metrics import ServeMetrics

DRAIN_LIMIT = 16 * 1024 * 1024  # read (and discard) at most this much of an oversized body before answering 413


class RequestMetrics:
    """Counts every HTTP request by route and status and times it; unknown paths count as route "other"."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 0
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = status or 500
            raise
        finally:
            # no answer at all: the client left before one was due (e.g. while sending its body)
            self.metrics.requests.labels(route, str(status or CLIENT_CLOSED)).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - start)


class ApiKey:
    """`Authorization: Bearer KEY` on every route but the open ones (health, docs) and CORS preflights."""

    def __init__(self, app: ASGIApp, key: str, open_paths: frozenset[str]) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and scope["path"] not in self.open_paths:
            given = Headers(scope=scope).get("authorization", "").encode()
            if not hmac.compare_digest(given, self.expected):
                message = "wrong API key" if given else "missing API key (send Authorization: Bearer KEY)"
                response = error_response(401, message, "unauthorized", {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class PayloadLimit:
    """Reads the whole request body (at most `limit` bytes) before the app runs, and answers 413 beyond it.

    The app then gets the body in one message, and later `receive` calls reach the server (a route waiting
    for its result still hears the client disconnect). An oversized body is drained (up to DRAIN_LIMIT) before
    the 413, so that the client reads the answer instead of a reset connection.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        oversized = declared.isdigit() and int(declared) > self.limit
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody to answer
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(body)
            if oversized or size > self.limit:
                oversized = True
                if size > DRAIN_LIMIT:
                    break
                continue
            chunks.append(body)
        if oversized:
            response = error_response(
                413, f"the request body is over the limit of {self.limit} bytes (--payload-limit)", "payload_too_large"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
