"""Both services write the same log lines and read a trace the same way (issue 17).

The API (api/observability/logs.py, tracing.py) and the function (cloud_functions/avatar/logs.py)
each have their own copy: a line of the same record, in the same trace, must come out the same
from both, so that one query finds a request's lines in both services; and a trace header must
name the same trace on both sides. The function's pipeline stages are the ones the API's metrics
label.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest

from api.observability import logs as api_logs
from api.observability import metrics as api_metrics
from api.observability import tracing as api_tracing
from avatar import logs as function_logs
from avatar import pipeline as function_pipeline

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def record(exc_info: Any = None, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("avatar.x", level, __file__, 7, "took %d ms", (12,), exc_info)


def failed_record() -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        return record(sys.exc_info(), logging.ERROR)


def api_line(formatter: logging.Formatter, line_record: logging.LogRecord, sampled: bool) -> str:
    with api_tracing.bound(api_tracing.Trace(TRACE_ID, SPAN_ID, sampled)):
        return formatter.format(line_record)


def function_line(
    formatter: logging.Formatter, line_record: logging.LogRecord, sampled: bool
) -> str:
    with function_logs.bound(function_logs.Trace(TRACE_ID, SPAN_ID, sampled)):
        return formatter.format(line_record)


def test_both_sides_name_the_fields_alike() -> None:
    for field in ("TRACE_FIELD", "SPAN_FIELD", "SAMPLED_FIELD", "SOURCE_FIELD"):
        assert getattr(function_logs, field) == getattr(api_logs, field), field
    assert function_logs.SEVERITIES == api_logs.SEVERITIES


@pytest.mark.parametrize("project", ["demo-project", None])
@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("make", [record, failed_record], ids=["plain", "exception"])
def test_both_sides_write_the_same_json_line(project: str | None, sampled: bool, make: Any) -> None:
    line_record = make()
    api_entry = json.loads(api_line(api_logs.CloudLoggingFormatter(project), line_record, sampled))
    function_entry = json.loads(
        function_line(function_logs.JsonFormatter(project), line_record, sampled)
    )

    assert set(function_entry) == set(api_entry)
    assert function_entry == api_entry


def test_outside_a_trace_both_sides_write_the_same_json_line() -> None:
    line_record = record()
    api_entry = json.loads(api_logs.CloudLoggingFormatter("p").format(line_record))
    function_entry = json.loads(function_logs.JsonFormatter("p").format(line_record))

    assert api_logs.TRACE_FIELD not in function_entry
    assert function_entry == api_entry


def test_both_sides_write_the_same_text_line() -> None:
    line_record = record()
    api_text = api_line(api_logs.TextFormatter(), line_record, True)
    function_text = function_line(function_logs.TextFormatter(), line_record, True)

    assert function_text == api_text


@pytest.mark.parametrize("levelno", [0, 5, 10, 15, 20, 30, 35, 40, 50, 60])
def test_both_sides_map_levels_alike(levelno: int) -> None:
    assert function_logs.severity(levelno) == api_logs.severity(levelno)


# --- reading a trace from headers ---------------------------------------------------------------

OTHER = "a" * 32
HEADERS: list[dict[str, str]] = [
    {},
    {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"},
    {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00"},
    {"traceparent": f" 00-{TRACE_ID}-{SPAN_ID}-03 "},
    {"traceparent": f"01-{TRACE_ID}-{SPAN_ID}-01-more"},
    {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01-more"},
    {"traceparent": f"ff-{TRACE_ID}-{SPAN_ID}-01"},
    {"traceparent": f"00-{'0' * 32}-{SPAN_ID}-01"},
    {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},
    {"traceparent": f"00-{TRACE_ID.upper()}-{SPAN_ID}-01"},
    {"traceparent": "garbage"},
    {"x-cloud-trace-context": f"{OTHER.upper()}/123;o=1"},
    {"x-cloud-trace-context": f"{OTHER}/123;o=0"},
    {"x-cloud-trace-context": OTHER},
    {"x-cloud-trace-context": f"{OTHER};o=1"},
    {"x-cloud-trace-context": f"{OTHER}/{2**64};o=1"},
    {"x-cloud-trace-context": f"{'0' * 32}/1;o=1"},
    {"x-cloud-trace-context": "garbage"},
    {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00", "x-cloud-trace-context": f"{OTHER}/1;o=1"},
    {"traceparent": "garbage", "x-cloud-trace-context": f"{OTHER}/1;o=1"},
    {"traceparent": "garbage", "x-cloud-trace-context": "garbage"},
]


def outcome(trace: Any, headers: dict[str, str]) -> tuple[str, bool]:
    """(the trace id, sampled); a trace id found in none of the headers reads as "new" (a new
    trace's ids are random, so only that it is new can match)."""
    named = trace.trace_id in " ".join(headers.values()).lower()
    return (trace.trace_id if named else "new", trace.sampled)


@pytest.mark.parametrize("headers", HEADERS, ids=lambda h: ";".join(h.values()) or "none")
def test_both_sides_read_the_same_trace_from_the_same_headers(headers: dict[str, str]) -> None:
    assert outcome(function_logs.from_headers(headers), headers) == outcome(
        api_tracing.from_headers(headers), headers
    )


@pytest.mark.parametrize("headers", HEADERS, ids=lambda h: ";".join(h.values()) or "none")
def test_both_sides_accept_and_refuse_the_same_header_values(headers: dict[str, str]) -> None:
    pairs = [
        (api_tracing.parse_traceparent, function_logs.parse_traceparent, "traceparent"),
        (
            api_tracing.parse_cloud_trace_context,
            function_logs.parse_cloud_trace_context,
            "x-cloud-trace-context",
        ),
    ]
    for api_parse, function_parse, name in pairs:
        if name not in headers:
            continue
        api_trace, function_trace = api_parse(headers[name]), function_parse(headers[name])
        api_read = None if api_trace is None else (api_trace.trace_id, api_trace.sampled)
        function_read = (
            None if function_trace is None else (function_trace.trace_id, function_trace.sampled)
        )
        assert function_read == api_read


def test_both_sides_name_the_headers_alike() -> None:
    assert function_logs.TRACEPARENT == api_tracing.TRACEPARENT
    assert function_logs.CLOUD_TRACE_CONTEXT == api_tracing.CLOUD_TRACE_CONTEXT


@pytest.mark.parametrize("sampled", [True, False])
def test_the_function_reads_the_trace_the_api_sends(sampled: bool) -> None:
    trace = api_tracing.Trace(TRACE_ID, SPAN_ID, sampled)
    with api_tracing.bound(trace):
        sent = api_tracing.outgoing_headers()

    received = function_logs.from_headers(sent)

    assert (received.trace_id, received.sampled) == (TRACE_ID, sampled)
    assert received.span_id not in {SPAN_ID, sent["traceparent"].split("-")[2]}


# --- the pipeline's stages ----------------------------------------------------------------------


def test_the_apis_metrics_label_the_functions_stages() -> None:
    assert (*function_pipeline.STAGES, "total") == api_metrics.FUNCTION_STAGES
    assert function_pipeline.PER_ANIMAL_STAGES == api_metrics.PER_ANIMAL_STAGES
