"""Log lines for Cloud Logging, or for a person at a terminal.

`LOG_FORMAT=json` (the default): one JSON object per line on stdout, in the shape Cloud Logging
reads from a container's output (`severity`, `message`, `time`, the trace, and `httpRequest` on
access lines: https://cloud.google.com/logging/docs/structured-logging). `LOG_FORMAT=text`: one
human-readable line each (`make run` on a terminal).

uvicorn is started with `--log-config api/observability/logging.json`, which builds the
formatter here (`formatter`), so the API's own lines, uvicorn's and the libraries' all take the
same shape. Nothing here reads a secret: what the lines say is up to their callers, and no line
may carry a key, a signature, an email address, a webhook secret or image bytes
(tests/api/test_log_hygiene.py and the whole test run's log scan check that).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from api.config import LogSettings
from api.observability import tracing

TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
SOURCE_FIELD = "logging.googleapis.com/sourceLocation"
# The attribute (`extra={HTTP_REQUEST: {...}}`) that makes a line an access line.
HTTP_REQUEST = "http_request"

# Cloud Logging's LogSeverity names for the logging module's levels.
SEVERITIES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


def severity(levelno: int) -> str:
    """The LogSeverity of a level (a custom level takes the nearest one below it)."""
    for level in sorted(SEVERITIES, reverse=True):
        if levelno >= level:
            return SEVERITIES[level]
    return "DEFAULT"


def trace_name(trace_id: str, project: str | None) -> str:
    """`projects/P/traces/ID`, the form that links a line to its trace; the bare id when the
    project is not known (the lines of one request still share it)."""
    return f"projects/{project}/traces/{trace_id}" if project else trace_id


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self._project = project

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            # Cloud Error Reporting reads a stack trace at the end of `message`.
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
        trace = tracing.current()
        if trace is not None:
            entry[TRACE_FIELD] = trace_name(trace.trace_id, self._project)
            entry[SPAN_FIELD] = trace.span_id
            entry[SAMPLED_FIELD] = trace.sampled
        http_request = getattr(record, HTTP_REQUEST, None)
        if http_request is not None:
            entry["httpRequest"] = http_request
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [trace]: message`, for reading at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(trace)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        trace = tracing.current()
        record.trace = f" [{trace.trace_id[:8]}]" if trace is not None else ""
        return super().format(record)


def formatter() -> logging.Formatter:
    """The formatter LOG_FORMAT names (built by logging.json's dictConfig)."""
    settings = LogSettings()
    if settings.log_format == "text":
        return TextFormatter()
    return CloudLoggingFormatter(settings.google_cloud_project)
