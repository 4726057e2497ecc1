"""The forwarder against respx standing in for the function: retries, timeouts, error mapping."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import time
import uuid
from datetime import timedelta
from email.utils import format_datetime

import google.auth.exceptions
import httpx
import pytest
import respx

from api.config import Settings
from api.db import utcnow
from api.errors import (
    ApiError,
    ContentBlocked,
    InvalidImage,
    NoFaceDetected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from api.forwarding.client import (
    FunctionClient,
    FunctionRequest,
    Stored,
    Target,
    build_function_client,
    pool_sizes,
)
from api.forwarding.id_token import REFRESH_MARGIN_S, IdTokenProvider
from api.forwarding.retry import RetryPolicy, parse_retry_after

FUNCTION_URL = "http://function.test/"

GOOD_ANSWER = {
    "image_url": "http://127.0.0.1:8000/media/x.png?sig=1",
    "object_name": "avatars/u/g.png",
    "animal": "cat",
    "faces": [
        {"box": {"x": 1, "y": 2, "width": 3, "height": 4}, "landmarks": {}, "confidence": 0.9}
    ],
    "backend": "local",
    "timings_ms": {"decode": 1.0, "total": 9.5},
}


def a_request(*animals: str) -> FunctionRequest:
    return FunctionRequest(
        image=b"\xff\xd8\xff\xe0fake-jpeg",
        content_type="image/jpeg",
        user_id=uuid.uuid4(),
        targets=tuple(Target(uuid.uuid4(), animal) for animal in animals or ("fox",)),
        style="character",
    )


def stored(result: object, request: FunctionRequest, index: int = 0) -> Stored:
    """The stored result of one target of the request (fails on an error)."""
    from api.forwarding.client import FunctionResult

    assert isinstance(result, FunctionResult)
    outcome = result.outcome(request.targets[index].generation_id)
    assert isinstance(outcome, Stored), outcome
    return outcome


class FakeSleep:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def a_client(
    sleep: FakeSleep, *, attempts: int = 3, budget_s: float = 10.0, **settings: object
) -> FunctionClient:
    built = build_function_client(Settings(function_url=FUNCTION_URL, **settings))  # type: ignore[arg-type]
    return FunctionClient(
        built._pools,
        FUNCTION_URL,
        policy=RetryPolicy(max_attempts=attempts, budget_s=budget_s),
        sleep=sleep,
    )


@respx.mock
async def test_posts_multipart_with_all_fields_and_reads_the_result() -> None:
    route = respx.post(FUNCTION_URL).respond(200, json=GOOD_ANSWER)
    request = a_request()
    result = await a_client(FakeSleep()).generate(request)
    assert stored(result, request).object_name == "avatars/u/g.png"
    assert result.faces[0]["confidence"] == 0.9
    assert stored(result, request).timings_ms == {"decode": 1.0, "total": 9.5}
    sent = route.calls.last.request
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    body = sent.content
    assert b'name="animal"\r\n\r\nfox' in body
    generation_id = request.targets[0].generation_id
    assert f'name="generation_id"\r\n\r\n{generation_id}'.encode() in body
    assert f'name="user_id"\r\n\r\n{request.user_id}'.encode() in body
    assert b'name="style"\r\n\r\ncharacter\r\n' in body
    assert b'name="image"; filename="upload"\r\nContent-Type: image/jpeg' in body
    assert b"fake-jpeg" in body
    assert "authorization" not in sent.headers


@respx.mock
async def test_retries_503_then_succeeds_honouring_retry_after() -> None:
    route = respx.post(FUNCTION_URL)
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": "2"}, json={"error": "upstream_unavailable"}),
        httpx.Response(200, json=GOOD_ANSWER),
    ]
    sleep = FakeSleep()
    request = a_request()
    result = await a_client(sleep).generate(request)
    assert stored(result, request).object_name == GOOD_ANSWER["object_name"]
    assert route.call_count == 2
    assert sleep.delays == [2.0]


@respx.mock
async def test_retries_connect_errors_with_jittered_backoff_then_gives_up_503() -> None:
    route = respx.post(FUNCTION_URL).mock(side_effect=httpx.ConnectError("refused"))
    sleep = FakeSleep()
    with pytest.raises(UpstreamUnavailable) as caught:
        await a_client(sleep, attempts=3).generate(a_request())
    assert route.call_count == 3
    assert len(sleep.delays) == 2
    assert all(0.0 <= d <= 0.2 * 2**i for i, d in enumerate(sleep.delays))
    assert caught.value.status == 503
    assert caught.value.retry_after_s is not None


@respx.mock
async def test_429_is_retried_and_ends_as_upstream_unavailable() -> None:
    route = respx.post(FUNCTION_URL).respond(429, headers={"Retry-After": "1"}, text="slow down")
    sleep = FakeSleep()
    with pytest.raises(UpstreamUnavailable) as caught:
        await a_client(sleep, attempts=2).generate(a_request())
    assert route.call_count == 2
    assert sleep.delays == [1.0]
    assert caught.value.retry_after_s == 1


@respx.mock
async def test_a_retry_after_beyond_the_budget_is_not_waited_for() -> None:
    route = respx.post(FUNCTION_URL).respond(503, headers={"Retry-After": "60"})
    sleep = FakeSleep()
    with pytest.raises(UpstreamUnavailable) as caught:
        await a_client(sleep, budget_s=10.0).generate(a_request())
    assert route.call_count == 1
    assert sleep.delays == []
    assert caught.value.retry_after_s == 60


@respx.mock
async def test_500_is_not_retried_and_maps_to_upstream_unavailable() -> None:
    route = respx.post(FUNCTION_URL).respond(500, text="Internal Server Error")
    with pytest.raises(UpstreamUnavailable):
        await a_client(FakeSleep()).generate(a_request())
    assert route.call_count == 1


@respx.mock
async def test_read_timeout_is_upstream_timeout_and_not_retried() -> None:
    route = respx.post(FUNCTION_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(UpstreamTimeout) as caught:
        await a_client(FakeSleep()).generate(a_request())
    assert route.call_count == 1
    assert caught.value.status == 504


@respx.mock
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (422, {"error": "no_face_detected", "detail": "no face"}, NoFaceDetected),
        (422, {"error": "invalid_image", "detail": "truncated"}, InvalidImage),
        (504, {"error": "upstream_timeout", "detail": "vertex slow"}, UpstreamTimeout),
        (401, {"error": "unauthorized", "detail": "bad token"}, UpstreamUnavailable),
        (404, "<html>not here</html>", UpstreamUnavailable),
    ],
)
async def test_function_errors_map_to_spec_codes(
    status: int, body: object, expected: type[ApiError]
) -> None:
    if isinstance(body, dict):
        respx.post(FUNCTION_URL).respond(status, json=body)
    else:
        respx.post(FUNCTION_URL).respond(status, text=str(body))
    with pytest.raises(expected) as caught:
        await a_client(FakeSleep()).generate(a_request())
    assert type(caught.value) is expected
    if isinstance(body, dict) and expected is not UpstreamUnavailable:
        assert caught.value.detail == body["detail"]


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"faces": []}),
        httpx.Response(200, json={"object_name": "", "faces": []}),
        httpx.Response(200, json={"object_name": "o", "faces": "nope"}),
        httpx.Response(200, json={"object_name": "o", "faces": [{"box": [1, 2, 3, 4]}]}),
        httpx.Response(200, json={"object_name": "o", "faces": [], "timings_ms": {"a": "x"}}),
    ],
)
async def test_malformed_answers_are_upstream_unavailable(answer: httpx.Response) -> None:
    respx.post(FUNCTION_URL).mock(return_value=answer)
    with pytest.raises(UpstreamUnavailable):
        await a_client(FakeSleep()).generate(a_request())


def several_answer(request: FunctionRequest, **errors: str) -> dict[str, object]:
    """The function's answer to the `animals` form; `errors`: animal -> its error code."""
    results = []
    for target in request.targets:
        code = errors.get(target.animal)
        name = None if code else f"avatars/{request.user_id}/{target.generation_id}.jpg"
        results.append(
            {
                "animal": target.animal,
                "generation_id": str(target.generation_id),
                "image_url": None if code else "http://elsewhere/x.jpg",
                "object_name": name,
                "error": code,
                "detail": f"{code} here" if code else None,
                "timings_ms": {"compose": 5.0, "store": 2.0},
            }
        )
    return {
        "results": results,
        "faces": GOOD_ANSWER["faces"],
        "width": 640,
        "height": 480,
        "backend": "local",
        "timings_ms": {"decode": 1.0, "detect": 2.0, "compose": 15.0, "store": 6.0, "total": 30.0},
    }


@respx.mock
async def test_several_animals_go_in_one_call_and_each_gets_its_result_or_error() -> None:
    request = a_request("fox", "cat", "panda")
    route = respx.post(FUNCTION_URL).respond(
        200, json=several_answer(request, cat="content_blocked", panda="upstream_unavailable")
    )
    result = await a_client(FakeSleep()).generate(request)
    body = route.calls.last.request.content
    assert b'name="animals"\r\n\r\nfox,cat,panda' in body
    ids = ",".join(str(t.generation_id) for t in request.targets)
    assert f'name="generation_ids"\r\n\r\n{ids}'.encode() in body
    assert b'name="animal"' not in body
    fox = stored(result, request, 0)
    assert fox.object_name.endswith(f"{request.targets[0].generation_id}.jpg")
    # The shared stages' timings and the animal's own.
    assert fox.timings_ms == {
        "decode": 1.0,
        "detect": 2.0,
        "compose": 5.0,
        "store": 2.0,
        "total": 30.0,
    }
    cat = result.outcome(request.targets[1].generation_id)
    panda = result.outcome(request.targets[2].generation_id)
    assert isinstance(cat, ContentBlocked)
    assert cat.detail == "content_blocked here"
    assert isinstance(panda, UpstreamUnavailable)
    assert panda.retry_after_s is not None


@respx.mock
@pytest.mark.parametrize("animals", [("fox",), ("fox", "cat")])
async def test_the_style_goes_with_one_animal_or_several(animals: tuple[str, ...]) -> None:
    route = respx.post(FUNCTION_URL).respond(200, json=GOOD_ANSWER)
    request = dataclasses.replace(a_request(*animals), style="paint")
    with contextlib.suppress(UpstreamUnavailable):  # GOOD_ANSWER answers one animal
        await a_client(FakeSleep()).generate(request)
    body = route.calls.last.request.content
    assert body.count(b'name="style"') == 1
    assert b'name="style"\r\n\r\npaint\r\n' in body


@respx.mock
@pytest.mark.parametrize("damage", ["missing", "reordered", "foreign_id", "not_a_list"])
async def test_a_several_answer_that_does_not_match_the_request_is_upstream_unavailable(
    damage: str,
) -> None:
    request = a_request("fox", "cat")
    answer = several_answer(request)
    results = answer["results"]
    assert isinstance(results, list)
    if damage == "missing":
        answer["results"] = results[:1]
    elif damage == "reordered":
        answer["results"] = results[::-1]
    elif damage == "foreign_id":
        results[1]["generation_id"] = str(uuid.uuid4())
    else:
        answer["results"] = {"fox": results[0]}
    respx.post(FUNCTION_URL).respond(200, json=answer)
    with pytest.raises(UpstreamUnavailable):
        await a_client(FakeSleep()).generate(request)


def test_shared_client_takes_limits_and_timeouts_from_settings() -> None:
    settings = Settings(
        function_url=FUNCTION_URL,
        function_timeout_s=30.0,
        function_connect_timeout_s=2.5,
        function_max_connections=7,
    )
    client = build_function_client(settings)
    (pool,) = client._pools
    assert (pool.timeout.read, pool.timeout.connect) == (30.0, 2.5)
    assert pool._transport._pool._max_connections == 7  # type: ignore[attr-defined]


def test_many_connections_are_spread_over_small_pools() -> None:
    client = build_function_client(Settings(function_url=FUNCTION_URL, function_max_connections=70))
    sizes = [p._transport._pool._max_connections for p in client._pools]  # type: ignore[attr-defined]
    assert sizes == [24, 23, 23]  # near-equal: a burst fills them evenly


class CountingTransport(httpx.AsyncBaseTransport):
    """One pool's transport: counts what it was sent, holds answers until released."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await self.gate.wait()
        return httpx.Response(200, json=GOOD_ANSWER)


async def test_light_load_reuses_the_first_pool_and_a_burst_spreads_over_all() -> None:
    gate = asyncio.Event()
    gate.set()
    transports = [CountingTransport(gate) for _ in range(3)]
    pools = [httpx.AsyncClient(transport=t) for t in transports]
    client = FunctionClient(pools, FUNCTION_URL, policy=RetryPolicy(1, 1.0))
    for _ in range(4):  # one at a time: the first pool's warm connections every time
        await client.generate(a_request())
    assert [t.requests for t in transports] == [4, 0, 0]
    gate.clear()
    burst = [asyncio.create_task(client.generate(a_request())) for _ in range(6)]
    await asyncio.sleep(0.05)
    assert [t.requests for t in transports] == [6, 2, 2]  # 2 each on top of the first 4
    gate.set()
    await asyncio.gather(*burst)
    assert client._in_flight == [0, 0, 0]


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(utcnow().replace(microsecond=0) + timedelta(seconds=30), usegmt=True)
    assert 25.0 <= (parse_retry_after(later) or 0.0) <= 30.0


def a_jwt(exp: float) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'exp': exp, 'aud': FUNCTION_URL})}.c2ln"


async def test_id_token_is_cached_until_near_expiry_and_fetched_once_at_a_time() -> None:
    now = [1_000_000.0]
    fetched: list[str] = []

    def fetch(audience: str) -> str:
        time.sleep(0.05)  # the blocking HTTP call google-auth makes
        fetched.append(audience)
        return a_jwt(now[0] + 3600)

    provider = IdTokenProvider(FUNCTION_URL, fetch=fetch, clock=lambda: now[0])
    headers = await asyncio.gather(*(provider.authorization() for _ in range(20)))
    assert fetched == [FUNCTION_URL]
    assert len(set(headers)) == 1
    assert str(headers[0]).startswith("Bearer ")
    now[0] += 3600 - REFRESH_MARGIN_S - 1
    await provider.authorization()
    assert len(fetched) == 1
    now[0] += 2
    await provider.authorization()
    assert len(fetched) == 2


@respx.mock
async def test_id_token_is_sent_and_a_401_makes_the_next_call_fetch_a_new_one() -> None:
    route = respx.post(FUNCTION_URL)
    route.side_effect = [httpx.Response(401), httpx.Response(200, json=GOOD_ANSWER)]
    tokens: list[str] = []

    def fetch(audience: str) -> str:
        tokens.append(a_jwt(time.time() + 3600 + len(tokens)))
        return tokens[-1]

    provider = IdTokenProvider(FUNCTION_URL, fetch=fetch)
    built = build_function_client(Settings(function_url=FUNCTION_URL))
    client = FunctionClient(
        built._pools, FUNCTION_URL, tokens=provider, policy=RetryPolicy(3, 10.0), sleep=FakeSleep()
    )
    with pytest.raises(UpstreamUnavailable):
        await client.generate(a_request())
    assert route.calls.last.request.headers["authorization"] == f"Bearer {tokens[0]}"
    await client.generate(a_request())
    assert route.calls.last.request.headers["authorization"] == f"Bearer {tokens[1]}"


@pytest.mark.parametrize(
    "failure",
    [
        google.auth.exceptions.RefreshError("metadata server said 500"),
        google.auth.exceptions.DefaultCredentialsError("no credentials"),
        google.auth.exceptions.TransportError("connection reset"),
    ],
)
@respx.mock
async def test_an_id_token_that_cannot_be_fetched_is_503_with_retry_after(failure) -> None:
    route = respx.post(FUNCTION_URL).mock(return_value=httpx.Response(200, json=GOOD_ANSWER))

    def fetch(audience: str) -> str:
        raise failure

    built = build_function_client(Settings(function_url=FUNCTION_URL))
    client = FunctionClient(
        built._pools,
        FUNCTION_URL,
        tokens=IdTokenProvider(FUNCTION_URL, fetch=fetch),
        policy=RetryPolicy(3, 10.0),
        sleep=FakeSleep(),
    )
    with pytest.raises(UpstreamUnavailable) as raised:
        await client.generate(a_request())
    assert raised.value.code == "upstream_unavailable"
    assert raised.value.retry_after_s == 5
    assert not route.called


@pytest.mark.parametrize("total", [1, 10, 32, 33, 500, 1000, 1001])
def test_connections_are_spread_over_near_equal_pools(total: int) -> None:
    # Requests take the pools in turn: a small remainder pool would queue its share early.
    sizes = pool_sizes(total, 32)
    assert sum(sizes) == total
    assert max(sizes) <= 32
    assert max(sizes) - min(sizes) <= 1
    assert len(sizes) == -(-total // 32)
