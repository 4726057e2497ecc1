"""A small limit on every request body but the uploads', enforced before the body is buffered.

A JSON endpoint needs a few hundred bytes; without a limit, one 100 MB POST to the open
`POST /v1/users` was read whole into memory before it was refused. This middleware refuses a
declared Content-Length over the limit before the application runs (the server delivers no more
than a Content-Length declares), and reads a chunked body only up to the limit before the
application sees it, so no handler runs on a body over the limit and no more than the limit is
ever held.

Why not FastAPI's own `max_body_size`: it lets a route that reads no body run first and swaps
its response for a 413 (a DELETE with a large Content-Length would erase, then answer 413), and
its 413 is plain text, not problem+json.

The upload routes (multipart) are left alone: api.uploads reads their stream under the upload
limit, as it arrives.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.error_handlers import problem_response
from api.errors import RequestTooLarge, size_text


class BodyLimit:
    """Pure ASGI middleware: 413 `request_too_large` for a body over `max_bytes`.

    `streamed`: the (method, path) pairs whose handlers read the body as a stream under a limit
    of their own (the uploads; a trailing slash, which the router redirects, counts as none).
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, streamed: Collection[tuple[str, str]]
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = frozenset(streamed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_streamed(scope):
            await self.app(scope, receive, send)
            return
        length, chunked = _framing(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        if not chunked:  # no body, or one of a declared length within the limit
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(buffered, receive), send)

    def _is_streamed(self, scope: Scope) -> bool:
        path = scope["path"].removeprefix(scope.get("root_path", "")).rstrip("/") or "/"
        return (scope["method"], path) in self.streamed

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = size_text(self.max_bytes)
        error = RequestTooLarge(f"the request body is over the {limit} limit of this endpoint")
        response = problem_response(error)
        # The rest of the body is not read: the connection cannot be reused after this answer.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The request's declared Content-Length (None when absent) and whether it is chunked (the
    server has checked the two headers' form and that they do not come together)."""
    length, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked


def _replay(buffered: list[Message], receive: Receive) -> Receive:
    """A receive that hands out the buffered messages first, then the client's own."""
    pending = list(buffered)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
