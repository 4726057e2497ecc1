"""/metrics, the access lines and the trace of a request (api.observability), in-process."""

from __future__ import annotations

import logging
import uuid

import httpx
from api_testing import ADMIN_KEY, assert_problem, auth, client_for, create_user, photo
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    function_stubbed,
    parse_multipart,
    upload,
    upload_pack,
    wait_finished,
)
from observability_testing import json_lines, moved, sample, samples, scrape
from process_testing import free_port

from api.observability.metrics import FUNCTION_STAGES

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
COUNTERS = (
    "avatar_generations_total",
    "avatar_packs_total",
    "http_requests_total",
    "avatar_function_call_duration_seconds_count",
    "avatar_work_job_duration_seconds_count",
    "avatar_webhook_deliveries_total",
)


async def test_a_generation_and_a_no_face_one_move_their_counters_by_exactly_one(contract_app):
    admin = auth(ADMIN_KEY)
    async with contract_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        before = await scrape(client, admin)
        made = await upload(client, key, photo("astronaut"), "fox")
        assert made.status_code == 201, made.text
        refused = await upload(client, key, photo("chelsea"), "cat")  # a cat: no human face
        assert refused.status_code == 422, refused.text
        after = await scrape(client, admin)

    delta = moved(before, after)
    assert {key: value for key, value in delta.items() if key[0] in COUNTERS} == {
        sample("avatar_generations_total", animal="fox", status="succeeded", code="none"): 1,
        sample(
            "avatar_generations_total", animal="cat", status="failed", code="no_face_detected"
        ): 1,
        sample("http_requests_total", route="/v1/generations", method="POST", status="201"): 1,
        sample("http_requests_total", route="/v1/generations", method="POST", status="422"): 1,
        # the first scrape, counted once it was answered
        sample("http_requests_total", route="/metrics", method="GET", status="200"): 1,
        sample("avatar_function_call_duration_seconds_count", outcome="ok"): 1,
        sample("avatar_function_call_duration_seconds_count", outcome="no_face_detected"): 1,
        sample("avatar_work_job_duration_seconds_count", kind="generation", status="succeeded"): 1,
        sample("avatar_work_job_duration_seconds_count", kind="generation", status="failed"): 1,
    }
    # The function's own timings of the call that succeeded, one observation per stage.
    stages = {
        dict(labels)["stage"]: value
        for (name, labels), value in delta.items()
        if name == "avatar_function_stage_duration_seconds_count"
    }
    assert stages == dict.fromkeys(FUNCTION_STAGES, 1)
    assert after[sample("avatar_work_queue_depth", kind="generation")] == 0


async def test_a_pack_counts_once_with_each_of_its_generations(app_factory):
    stub = FunctionStub(animal_errors={"cat": "no_face_detected"})
    admin = auth(ADMIN_KEY)
    with function_stubbed(stub):
        async with app_factory(function_url=FUNCTION_URL) as app, client_for(app) as client:
            _, key = await create_user(client)
            before = await scrape(client, admin)
            response = await upload_pack(client, key, a_selfie((320, 240)), "fox,cat")
            assert response.status_code == 201, response.text
            after = await scrape(client, admin)

    delta = moved(before, after)
    assert delta[sample("avatar_packs_total", status="partial")] == 1
    assert delta[sample("avatar_generations_total", animal="fox", status="succeeded", code="none")]
    assert (
        delta[
            sample(
                "avatar_generations_total", animal="cat", status="failed", code="no_face_detected"
            )
        ]
        == 1
    )
    assert delta[sample("avatar_work_job_duration_seconds_count", kind="pack", status="failed")]
    # One call for the pack: the shared stages once, compose and store per animal that succeeded.
    assert delta[sample("avatar_function_call_duration_seconds_count", outcome="ok")] == 1
    assert delta[sample("avatar_function_stage_duration_seconds_count", stage="compose")] == 1


async def test_metrics_need_the_admin_key_outside_development(app_factory):
    async with app_factory(environment="production") as app, client_for(app) as client:
        assert_problem(await client.get("/metrics"), 401, "unauthorized")
        wrong = await client.get("/metrics", headers=auth("aa_" + "x" * 43))
        assert_problem(wrong, 401, "unauthorized")
        _, key = await create_user(client)
        assert_problem(await client.get("/metrics", headers=auth(key)), 403, "forbidden")
        assert (await client.get("/metrics", headers=auth(ADMIN_KEY))).status_code == 200


async def test_metrics_are_open_in_development_and_absent_when_disabled(app_factory):
    async with app_factory(environment="development") as app, client_for(app) as client:
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert "# TYPE http_requests_total counter" in response.text
        assert "/metrics" not in app.openapi()["paths"]  # for Prometheus, not the app's docs
    async with app_factory(metrics_enabled=False) as app, client_for(app) as client:
        assert_problem(await client.get("/metrics", headers=auth(ADMIN_KEY)), 404, "not_found")


async def test_labels_name_route_templates_never_ids_or_paths(client):
    _, key = await create_user(client)
    unknown = uuid.uuid4()
    assert (await client.get(f"/v1/generations/{unknown}", headers=auth(key))).status_code == 404
    assert (await client.get(f"/no/such/{unknown}")).status_code == 404
    assert (await client.request("BREW", "/v1/animals")).status_code == 405
    page = (await client.get("/metrics", headers=auth(ADMIN_KEY))).text

    found = await scrape(client, auth(ADMIN_KEY))
    assert found[
        sample(
            "http_requests_total",
            route="/v1/generations/{generation_id}",
            method="GET",
            status="404",
        )
    ]
    assert found[sample("http_requests_total", route="unmatched", method="GET", status="404")]
    assert found[sample("http_requests_total", route="/v1/animals", method="other", status="405")]
    assert str(unknown) not in page
    assert "/no/such" not in page
    assert "BREW" not in page


async def test_a_request_logs_its_access_line_under_its_trace(client):
    with json_lines() as lines:
        response = await client.get("/v1/animals?x=1", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    (access,) = [line for line in lines if line["logger"] == "api.access"]
    assert access["logging.googleapis.com/trace"] == f"projects/test-project/traces/{TRACE_ID}"
    assert access["logging.googleapis.com/trace_sampled"] is True
    assert access["severity"] == "INFO"
    assert access["httpRequest"] == access["httpRequest"] | {
        "requestMethod": "GET",
        "requestUrl": "/v1/animals",  # never the query: a /media link's is its signature
        "status": 200,
        "responseSize": str(len(response.content)),
    }
    assert access["httpRequest"]["latency"].endswith("s")
    assert "remoteIp" not in access["httpRequest"]


async def test_a_google_trace_header_is_taken_and_a_request_without_one_starts_a_trace(client):
    with json_lines(project=None) as lines:
        await client.get("/v1/animals", headers={"x-cloud-trace-context": f"{TRACE_ID}/1;o=1"})
        await client.get("/v1/animals")
        await client.get("/v1/animals", headers={"traceparent": "00-zz-00-01"})  # malformed
    first, second, third = (line["logging.googleapis.com/trace"] for line in lines)
    assert first == TRACE_ID  # no project known: the bare id
    assert len({first, second, third}) == 3
    assert all(len(trace) == 32 for trace in (second, third))


class ConflictOnce:
    """The function: its first answer says a result is stored already (the runner logs that it
    replaces it), then it answers like FunctionStub; it records the headers of each call."""

    def __init__(self) -> None:
        self.headers: list[httpx.Headers] = []
        self.stub = FunctionStub()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        if len(self.headers) == 1:
            return httpx.Response(409, json={"error": "conflict", "detail": "stored already"})
        return httpx.Response(200, json=self.stub.success(parse_multipart(request)))


async def test_the_trace_reaches_the_background_work_and_the_function(app_factory):
    function = ConflictOnce()
    with function_stubbed(function), json_lines() as lines:
        async with (
            app_factory(function_url=FUNCTION_URL, isolated=False) as app,
            client_for(app) as client,
        ):
            _, key = await create_user(client)
            accepted = await upload(
                client, key, a_selfie((320, 240)), prefer="respond-async", traceparent=TRACEPARENT
            )
            assert accepted.status_code == 202
            done = await wait_finished(client, key, accepted.headers["location"])
            assert done["status"] == "succeeded"

    trace = f"projects/test-project/traces/{TRACE_ID}"
    (replacing,) = [line for line in lines if "earlier attempt's result" in line["message"]]
    assert replacing["logger"] == "api.generations.runner"
    assert replacing["logging.googleapis.com/trace"] == trace
    posted = [
        line
        for line in lines
        if line.get("httpRequest", {}).get("requestMethod") == "POST"
        and line["httpRequest"]["requestUrl"] == "/v1/generations"
    ]
    assert [line["logging.googleapis.com/trace"] for line in posted] == [trace]
    # Each call to the function names the trace, as a new span of it.
    parents = [headers["traceparent"].split("-") for headers in function.headers]
    assert [(version, trace_id) for version, trace_id, _, _ in parents] == [("00", TRACE_ID)] * 2
    assert all(span != "00f067aa0ba902b7" for _, _, span, _ in parents)


def test_a_log_record_with_an_exception_keeps_its_traceback_in_the_message() -> None:
    with json_lines() as lines:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("api.test").exception("it failed")
    (line,) = lines
    assert line["severity"] == "ERROR"
    assert line["message"].startswith("it failed\nTraceback")
    assert "ValueError: boom" in line["message"]
    assert "logging.googleapis.com/trace" not in line  # outside any request


async def test_a_metrics_port_serves_them_without_a_key_on_loopback_only(app_factory):
    port = free_port()
    async with app_factory(metrics_port=port, metrics_refresh_s=0.05) as app:
        async with client_for(app) as client:
            assert (await client.get("/v1/animals")).status_code == 200
        async with httpx.AsyncClient() as scraper:
            response = await scraper.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        found = samples(response.text)
        assert found[sample("http_requests_total", route="/v1/animals", method="GET", status="200")]
        assert found[sample("avatar_work_queue_depth", kind="generation")] == 0
        # A second app on the same port (another worker of one server) starts, and leaves the
        # port to the first.
        async with app_factory(metrics_port=port), httpx.AsyncClient() as scraper:
            again = await scraper.get(f"http://127.0.0.1:{port}/metrics")
            assert samples(again.text) == samples(again.text) | {
                sample("http_requests_total", route="/v1/animals", method="GET", status="200"): 1
            }
    # Stopped with its app.
    async with httpx.AsyncClient() as scraper:
        try:
            await scraper.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
        except httpx.ConnectError:
            return
    raise AssertionError("the metrics port still answers after the app stopped")
