"""The trace a request belongs to, carried by a context variable.

A request's trace comes from its `traceparent` header (W3C Trace Context), else from Google's
`X-Cloud-Trace-Context`, else a new one is started. Everything that runs in the request's
context (its handlers, and the background tasks it starts: asyncio copies the context into each
task) logs that trace id; the function is called with a `traceparent` of the same trace, so its
log lines carry it too. Work that starts outside any request (a sweep, a resumed job) starts a
trace of its own.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

TRACEPARENT = "traceparent"
CLOUD_TRACE_CONTEXT = "x-cloud-trace-context"

# version 00: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>; a later version may append
# fields after the flags (the spec says to read the first four).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
# TRACE_ID/SPAN_ID;o=OPTIONS, the span id in decimal (the options part is optional).
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]+))?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_MAX_SPAN = 2**64 - 1


@dataclass(frozen=True)
class Trace:
    """A trace id (32 hex digits), the span of this process's work in it, and whether the
    caller sampled it."""

    trace_id: str
    span_id: str
    sampled: bool = False

    def child(self) -> Trace:
        """A new span of the same trace (for an outgoing call)."""
        return Trace(self.trace_id, _new_span_id(), self.sampled)

    def traceparent(self) -> str:
        """The W3C header naming this span as the parent of the callee's."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


_current: ContextVar[Trace | None] = ContextVar("trace", default=None)


def new_trace() -> Trace:
    """A trace of our own: random ids, not sampled."""
    return Trace(secrets.token_hex(16), _new_span_id())


def _new_span_id() -> str:
    span = secrets.token_hex(8)
    return span if span != _ZERO_SPAN else _new_span_id()


def parse_traceparent(value: str) -> Trace | None:
    """The trace of a `traceparent` header; None for a malformed or invalid one."""
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return Trace(trace_id, _new_span_id(), bool(int(flags, 16) & 1))


def parse_cloud_trace_context(value: str) -> Trace | None:
    """The trace of an `X-Cloud-Trace-Context` header; None for a malformed one."""
    match = _CLOUD_TRACE.match(value.strip())
    if match is None:
        return None
    trace_id, span, options = match.groups()
    trace_id = trace_id.lower()
    if trace_id == _ZERO_TRACE or (span is not None and int(span) > _MAX_SPAN):
        return None
    return Trace(trace_id, _new_span_id(), options == "1")


def from_headers(headers: Mapping[str, str]) -> Trace:
    """The incoming request's trace (header names in lower case), or a new one."""
    value = headers.get(TRACEPARENT)
    if value is not None and (trace := parse_traceparent(value)) is not None:
        return trace
    value = headers.get(CLOUD_TRACE_CONTEXT)
    if value is not None and (trace := parse_cloud_trace_context(value)) is not None:
        return trace
    return new_trace()


def current() -> Trace | None:
    """The trace of the work running now, if any."""
    return _current.get()


@contextmanager
def bound(trace: Trace) -> Iterator[Trace]:
    """Run the block (and the tasks it starts) in `trace`."""
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)


def ensure() -> Trace:
    """The current trace, or a new one bound to the rest of the current context (for work that
    starts outside a request: each asyncio task has a context of its own)."""
    trace = _current.get()
    if trace is None:
        trace = new_trace()
        _current.set(trace)
    return trace


def outgoing_headers() -> dict[str, str]:
    """The `traceparent` to send with a call made now (empty outside any trace)."""
    trace = _current.get()
    return {} if trace is None else {TRACEPARENT: trace.child().traceparent()}
