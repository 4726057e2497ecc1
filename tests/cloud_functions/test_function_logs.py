"""The function's log lines: Cloud Logging JSON (or text), each with its request's trace."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, TextIO

import functions_framework
import pytest
from flask.testing import FlaskClient
from function_testing import MAIN_PY, MEDIA_KEY

from avatar import logs
from avatar.config import LogSettings, get_settings
from avatar.inputs import DEADLINE_HEADER

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
HEX16 = re.compile(r"[0-9a-f]{16}")
HEX32 = re.compile(r"[0-9a-f]{32}")
KEYS = {
    "severity",
    "message",
    "time",
    "logger",
    logs.SOURCE_FIELD,
    logs.TRACE_FIELD,
    logs.SPAN_FIELD,
    logs.SAMPLED_FIELD,
}


@pytest.fixture(autouse=True)
def root_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The logging settings of each test's own; the root logger as it was, afterwards."""
    for name in ("LOG_FORMAT", "GCP_PROJECT", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    level, before = root.level, {handler: handler.formatter for handler in root.handlers}
    yield
    for handler in root.handlers[:]:
        if isinstance(handler, logs.StdoutHandler) and handler not in before:
            root.removeHandler(handler)
    for handler, formatter in before.items():
        handler.setFormatter(formatter)
    root.setLevel(level)


def record(message: str = "hello %s", exc_info: Any = None) -> logging.LogRecord:
    args = ("world",) if "%s" in message else ()
    return logging.LogRecord("avatar.test", logging.WARNING, __file__, 42, message, args, exc_info)


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of the output, each of which must be one JSON object."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# --- parsing the caller's trace -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sampled"),
    [
        (TRACEPARENT, True),
        (f"00-{TRACE_ID}-{PARENT_ID}-00", False),
        (f"  00-{TRACE_ID}-{PARENT_ID}-03  ", True),
        (f"01-{TRACE_ID}-{PARENT_ID}-01-future-fields", True),  # a later version: read 4 fields
    ],
)
def test_a_valid_traceparent_gives_its_trace(value: str, sampled: bool) -> None:
    trace = logs.parse_traceparent(value)

    assert trace is not None
    assert (trace.trace_id, trace.sampled) == (TRACE_ID, sampled)
    assert HEX16.fullmatch(trace.span_id)
    assert trace.span_id != PARENT_ID  # the function's work is a span of its own


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        f"00-{'0' * 32}-{PARENT_ID}-01",  # zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # zero parent id
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper case is not W3C
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-1",
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
        f"00_{TRACE_ID}_{PARENT_ID}_01",
    ],
)
def test_an_invalid_traceparent_is_refused(value: str) -> None:
    assert logs.parse_traceparent(value) is None


@pytest.mark.parametrize(
    ("value", "sampled"),
    [
        (f"{TRACE_ID.upper()}/1234567890;o=1", True),
        (f"{TRACE_ID}/1;o=0", False),
        (TRACE_ID, False),
        (f"{TRACE_ID};o=1", True),
    ],
)
def test_a_cloud_trace_context_gives_its_trace(value: str, sampled: bool) -> None:
    trace = logs.parse_cloud_trace_context(value)

    assert trace is not None
    assert (trace.trace_id, trace.sampled) == (TRACE_ID, sampled)


@pytest.mark.parametrize(
    "value", ["", "nope", f"{'0' * 32}/1;o=1", f"{TRACE_ID}/{2**64};o=1", f"{TRACE_ID}/abc"]
)
def test_an_invalid_cloud_trace_context_is_refused(value: str) -> None:
    assert logs.parse_cloud_trace_context(value) is None


def test_traceparent_comes_before_the_cloud_trace_context() -> None:
    other = "a" * 32
    headers = {"traceparent": TRACEPARENT, "x-cloud-trace-context": f"{other}/1;o=0"}

    assert logs.from_headers(headers).trace_id == TRACE_ID
    headers["traceparent"] = "invalid"
    assert logs.from_headers(headers).trace_id == other


def test_without_a_usable_header_a_new_trace_starts() -> None:
    first = logs.from_headers({"traceparent": "invalid", "x-cloud-trace-context": "invalid"})
    second = logs.from_headers({})

    for trace in (first, second):
        assert HEX32.fullmatch(trace.trace_id)
        assert HEX16.fullmatch(trace.span_id)
        assert not trace.sampled
    assert first.trace_id != second.trace_id


def test_the_trace_is_bound_to_the_block_and_follows_traced_work_to_a_thread() -> None:
    trace = logs.Trace(TRACE_ID, PARENT_ID, sampled=True)
    seen: list[logs.Trace | None] = []

    with logs.bound(trace):
        assert logs.current() == trace
        work = logs.traced(lambda: seen.append(logs.current()))
        untraced = threading.Thread(target=lambda: seen.append(logs.current()))
        untraced.start()
        untraced.join()
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()

    assert logs.current() is None
    assert seen == [None, trace]  # a plain thread starts without it; `traced` carries it


# --- the lines ------------------------------------------------------------------------------------


def test_a_json_line_has_cloud_loggings_fields_and_the_trace() -> None:
    line_record = record()
    with logs.bound(logs.Trace(TRACE_ID, PARENT_ID, sampled=True)):
        line = logs.JsonFormatter("demo-project").format(line_record)

    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == KEYS
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "hello world"
    assert entry["logger"] == "avatar.test"
    assert entry[logs.SOURCE_FIELD] == {"file": __file__, "line": 42, "function": None}
    assert entry[logs.TRACE_FIELD] == f"projects/demo-project/traces/{TRACE_ID}"
    assert entry[logs.SPAN_FIELD] == PARENT_ID
    assert entry[logs.SAMPLED_FIELD] is True
    written = datetime.fromisoformat(entry["time"])
    assert written.utcoffset() == timedelta(0)
    assert abs(written.timestamp() - line_record.created) < 1e-5


def test_without_a_project_the_line_has_the_bare_trace_id() -> None:
    with logs.bound(logs.Trace(TRACE_ID, PARENT_ID)):
        entry = json.loads(logs.JsonFormatter(None).format(record()))

    assert entry[logs.TRACE_FIELD] == TRACE_ID
    assert entry[logs.SAMPLED_FIELD] is False


def test_outside_a_trace_the_line_has_no_trace_fields() -> None:
    entry = json.loads(logs.JsonFormatter("demo-project").format(record()))

    assert set(entry) == KEYS - {logs.TRACE_FIELD, logs.SPAN_FIELD, logs.SAMPLED_FIELD}


def test_an_exceptions_traceback_ends_the_message() -> None:
    try:
        raise RuntimeError("the model glue broke")
    except RuntimeError:
        line_record = record("failed", exc_info=sys.exc_info())

    entry = json.loads(logs.JsonFormatter().format(line_record))

    assert entry["message"].startswith("failed\nTraceback (most recent call last):")
    assert entry["message"].endswith("RuntimeError: the model glue broke")
    assert entry["severity"] == "WARNING"


@pytest.mark.parametrize(
    ("levelno", "severity"),
    [(5, "DEFAULT"), (10, "DEBUG"), (20, "INFO"), (25, "INFO"), (40, "ERROR"), (50, "CRITICAL")],
)
def test_levels_map_to_cloud_logging_severities(levelno: int, severity: str) -> None:
    assert logs.severity(levelno) == severity


def test_a_text_line_is_for_a_person() -> None:
    with logs.bound(logs.Trace(TRACE_ID, PARENT_ID)):
        line = logs.TextFormatter().format(record())

    assert line.endswith(f"WARNING avatar.test [{TRACE_ID[:8]}]: hello world")
    assert logs.TextFormatter().format(record()).endswith("WARNING avatar.test: hello world")


# --- configuring ----------------------------------------------------------------------------------


class CaptureLike(logging.StreamHandler[TextIO]):
    """A StreamHandler subclass on stderr, as pytest's capture handlers are."""


def test_configuring_replaces_functions_frameworks_handlers_once() -> None:
    root = logging.getLogger()
    plain_out, plain_err = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    others = [CaptureLike(sys.stderr), logging.StreamHandler(io.StringIO())]
    for handler in (plain_out, plain_err, *others):
        root.addHandler(handler)
    try:
        first = logs.configure_logging("json", "demo-project")
        second = logs.configure_logging("text")

        assert first is second
        assert isinstance(second.formatter, logs.TextFormatter)
        assert plain_out not in root.handlers
        assert plain_err not in root.handlers
        assert all(handler in root.handlers for handler in others)
        assert sum(isinstance(h, logs.StdoutHandler) for h in root.handlers) == 1
        assert root.level == logging.INFO
    finally:
        for handler in others:
            root.removeHandler(handler)


def test_the_logging_settings_ignore_the_other_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_PIXELS", "lots")
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("MEDIA_SIGNING_KEY", "changeme")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "fallback-project")

    assert LogSettings() == LogSettings(log_format="json", gcp_project="fallback-project")
    monkeypatch.setenv("GCP_PROJECT", "function-project")
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert LogSettings() == LogSettings(log_format="text", gcp_project="function-project")


# --- through the function -------------------------------------------------------------------------


def load_client() -> FlaskClient:
    """The real main.py, loaded afresh: it configures logging from the environment then."""
    app = functions_framework.create_app(target="generate_animal_avatar", source=str(MAIN_PY))
    return app.test_client()


def test_a_misconfigured_requests_line_carries_the_callers_trace(
    function_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    astronaut_jpeg: bytes,
) -> None:
    monkeypatch.setenv("MAX_PIXELS", "lots")
    monkeypatch.setenv("GCP_PROJECT", "demo-project")
    get_settings.cache_clear()
    client = load_client()
    capsys.readouterr()

    response = client.post(
        "/?animal=cat",
        data=astronaut_jpeg,
        content_type="image/jpeg",
        headers={"Traceparent": TRACEPARENT},  # any case: Flask's headers ignore it
    )

    assert response.status_code == 500
    output = capsys.readouterr().out
    (line,) = [e for e in json_lines(output) if "misconfigured" in e["message"]]
    assert set(line) == KEYS
    assert line["severity"] == "ERROR"
    assert line["logger"] == "main"
    assert line[logs.TRACE_FIELD] == f"projects/demo-project/traces/{TRACE_ID}"
    assert line[logs.SAMPLED_FIELD] is True
    assert HEX16.fullmatch(line[logs.SPAN_FIELD])
    assert "max_pixels" in line["message"]
    assert "lots" not in output  # the field is named, not the value read
    assert MEDIA_KEY not in output


def test_a_late_requests_warning_carries_the_cloud_trace(
    function_env: None, capsys: pytest.CaptureFixture[str], astronaut_jpeg: bytes
) -> None:
    client = load_client()
    capsys.readouterr()

    response = client.post(
        "/?animal=fox&user_id=late",
        data=astronaut_jpeg,
        content_type="image/jpeg",
        headers={
            "X-Cloud-Trace-Context": f"{TRACE_ID}/123;o=1",
            DEADLINE_HEADER: f"{time.time() - 1:.3f}",
        },
    )

    assert response.status_code == 504
    output = capsys.readouterr().out
    (line,) = [e for e in json_lines(output) if "outlived" in e["message"]]
    assert line["severity"] == "WARNING"
    assert line[logs.TRACE_FIELD] == TRACE_ID  # no project known: the bare id
    assert MEDIA_KEY not in output
    assert "/media/" not in output  # no signed URL


def test_each_request_has_its_own_trace(
    function_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAX_PIXELS", "lots")
    get_settings.cache_clear()
    client = load_client()
    capsys.readouterr()

    for _ in range(2):
        client.post("/?animal=cat", data=b"x", content_type="image/jpeg")

    lines = json_lines(capsys.readouterr().out)
    # Each request: its error, and its answer's line.
    assert [e["severity"] for e in lines] == ["ERROR", "INFO"] * 2
    traces = [e[logs.TRACE_FIELD] for e in lines if e["severity"] == "ERROR"]
    assert [e[logs.TRACE_FIELD] for e in lines] == [traces[0]] * 2 + [traces[1]] * 2
    assert len(traces) == 2
    assert all(HEX32.fullmatch(trace) for trace in traces)
    assert traces[0] != traces[1]
    assert logs.current() is None  # nothing outlives the request


def test_log_format_text_gives_text_lines(
    function_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "text")
    monkeypatch.setenv("MAX_PIXELS", "lots")
    get_settings.cache_clear()
    client = load_client()
    capsys.readouterr()

    headers = {"traceparent": TRACEPARENT}
    client.post("/?animal=cat", data=b"x", content_type="image/jpeg", headers=headers)

    line, answered = capsys.readouterr().out.splitlines()
    assert f"ERROR   main [{TRACE_ID[:8]}]: the function is misconfigured: " in line
    assert answered.endswith(f"INFO    main [{TRACE_ID[:8]}]: answered 500 internal_error")


def test_an_invalid_log_format_falls_back_to_json_and_says_so(
    function_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml-not-a-format")

    load_client()

    (line,) = json_lines(capsys.readouterr().out)
    assert line["severity"] == "ERROR"
    assert "the logging settings are invalid: log_format: " in line["message"]
    assert "xml-not-a-format" not in line["message"]
