"""Per request: its trace (api.observability.tracing), its metrics, and its access line."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.observability import tracing
from api.observability.logs import HTTP_REQUEST
from api.observability.metrics import Metrics

access_logger = logging.getLogger("api.access")

UNMATCHED = "unmatched"
# Probes and scrapes that went well are counted, not logged: one line each every few seconds
# would bury the requests an operator looks for.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
USER_AGENT = "user-agent"
# The request headers read here, in one pass: the trace's, and the access line's user agent.
_READ_HEADERS = {
    name.encode() for name in (tracing.TRACEPARENT, tracing.CLOUD_TRACE_CONTEXT, USER_AGENT)
}
MAX_USER_AGENT = 256


def route_of(scope: Scope) -> str:
    """The template of the route that answered (`/v1/generations/{generation_id}`), never the
    raw path: a closed set of label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class Observability:
    """Pure ASGI middleware, the outermost of the app's own: it sees every answer's status
    (a problem+json error included; an unhandled exception counts as the 500 it becomes)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _READ_HEADERS
        }
        answer = {"status": 500, "size": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["size"] += len(message.get("body", b""))
            await send(message)

        started = time.perf_counter()
        with tracing.bound(tracing.from_headers(headers)):
            try:
                await self.app(scope, receive, sending)
            finally:
                seconds = time.perf_counter() - started
                status = answer["status"]
                self.metrics.request_answered(route_of(scope), scope["method"], status, seconds)
                if status >= 400 or scope["path"] not in QUIET_PATHS:
                    _log_access(scope, headers, status, answer["size"], seconds)


def _log_access(
    scope: Scope, headers: dict[str, str], status: int, size: int, seconds: float
) -> None:
    """One line per request, with Cloud Logging's `httpRequest`: the path without its query
    (a /media link's signature is a working link), no client address."""
    level = logging.ERROR if status >= 500 else logging.INFO
    if not access_logger.isEnabledFor(level):  # uvicorn run without the log config
        return
    method = scope["method"]
    path = scope["path"]
    http_request: dict[str, Any] = {
        "requestMethod": method,
        "requestUrl": path,
        "status": status,
        "responseSize": str(size),
        "latency": f"{seconds:.6f}s",
        "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
    }
    if USER_AGENT in headers:
        http_request["userAgent"] = headers[USER_AGENT][:MAX_USER_AGENT]
    access_logger.log(
        level,
        "%s %s %d %.1f ms",
        method,
        path,
        status,
        seconds * 1000,
        extra={HTTP_REQUEST: http_request},
    )
