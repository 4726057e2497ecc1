"""Log lines for Cloud Logging (or a terminal), each carrying the trace of its request.

The function's side of the API's api/observability/logs.py and tracing.py (the two services
share no code; tests/contract/test_log_shape.py keeps them alike). A request's trace comes from
its `traceparent` header (W3C Trace Context, which the API sends), else from Google's
`X-Cloud-Trace-Context`, else a new one; main.py binds it for the request (`bound`), and every
line logged meanwhile carries it. Work handed to another thread keeps it through `traced`.

`json` (the default): one object per line on stdout, in the shape Cloud Logging reads
(https://cloud.google.com/logging/docs/structured-logging); `text`: a line for a person. Nothing
here reads the environment (avatar.config does) or logs anything of a request by itself.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TextIO, TypeVar

TRACEPARENT = "traceparent"
CLOUD_TRACE_CONTEXT = "x-cloud-trace-context"
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
SOURCE_FIELD = "logging.googleapis.com/sourceLocation"
SEVERITIES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}

# 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>; a later version may append fields.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
# TRACE_ID/SPAN_ID;o=OPTIONS, the span id in decimal (the options part is optional).
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]+))?$")
_ZERO_TRACE, _ZERO_SPAN, _MAX_SPAN = "0" * 32, "0" * 16, 2**64 - 1

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Trace:
    """A trace id (32 hex), the span of this process's work in it (16 hex), and whether the
    caller sampled it."""

    trace_id: str
    span_id: str
    sampled: bool = False


class Headers(Protocol):
    """What `from_headers` reads: Flask's request.headers (any case), or a dict in lower case."""

    def get(self, key: str, /) -> str | None: ...


_current: ContextVar[Trace | None] = ContextVar("avatar_trace", default=None)


def _new_span_id() -> str:
    span = secrets.token_hex(8)
    return span if span != _ZERO_SPAN else _new_span_id()


def new_trace() -> Trace:
    """A trace of our own: random ids, not sampled."""
    return Trace(secrets.token_hex(16), _new_span_id())


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
    if trace_id == _ZERO_TRACE or (span is not None and int(span) > _MAX_SPAN):
        return None
    return Trace(trace_id.lower(), _new_span_id(), options == "1")


def from_headers(headers: Headers) -> Trace:
    """The request's trace: `traceparent`, else `X-Cloud-Trace-Context`, else a new one."""
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
    """Run the block in `trace`: the lines it logs carry it."""
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)


def traced(function: Callable[P, R]) -> Callable[P, R]:
    """`function` run in the trace current now, whichever thread calls it (a pool's worker does
    not inherit the caller's context variables)."""
    trace = current()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with bound(trace) if trace is not None else nullcontext():
            return function(*args, **kwargs)

    return run


def severity(levelno: int) -> str:
    """The LogSeverity of a level (a custom level takes the nearest one below it)."""
    for level in sorted(SEVERITIES, reverse=True):
        if levelno >= level:
            return SEVERITIES[level]
    return "DEFAULT"


def trace_name(trace_id: str, project: str | None) -> str:
    """`projects/P/traces/ID` (links the line to its trace), or the bare id without a project."""
    return f"projects/{project}/traces/{trace_id}" if project else trace_id


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, with the current trace."""

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:  # Error Reporting reads a stack trace at the end of `message`
            message = f"{message}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        entry: dict[str, Any] = {
            "severity": severity(record.levelno),
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "logger": record.name,
            SOURCE_FIELD: {
                "file": record.pathname,
                "line": record.lineno,
                "function": record.funcName,
            },
        }
        trace = current()
        if trace is not None:
            entry[TRACE_FIELD] = trace_name(trace.trace_id, self.project)
            entry[SPAN_FIELD] = trace.span_id
            entry[SAMPLED_FIELD] = trace.sampled
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [trace]: message`, for reading at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(trace)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        trace = current()
        record.trace = f" [{trace.trace_id[:8]}]" if trace is not None else ""
        return super().format(record)


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to sys.stdout as it is when the line is written (a redirect, a test's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout  # logging.Handler.handle holds the handler's lock here
        super().emit(record)


def configure_logging(log_format: str = "json", project: str | None = None) -> StdoutHandler:
    """One stdout handler on the root logger, at INFO, with the formatter `log_format` names
    (`text`, else JSON; `project` names the traces). Again, it only swaps the formatter.

    functions-framework's setup_logging() adds plain stream handlers to stdout and stderr that
    would print every line twice, unformatted: those go. Other handlers (a test's capture) stay.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and (
            handler.stream is sys.stdout or handler.stream is sys.stderr
        ):
            root.removeHandler(handler)
    ours = next((h for h in root.handlers if isinstance(h, StdoutHandler)), None)
    if ours is None:
        ours = StdoutHandler(sys.stdout)
        root.addHandler(ours)
    ours.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter(project))
    root.setLevel(logging.INFO)
    return ours
