"""The API's one way to the Cloud Function: a shared httpx.AsyncClient with retries.

httpx errors and the function's answers are translated to the API's error family here, and
nowhere else.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import TypeAdapter

from api.config import Settings
from api.errors import FUNCTION_CODES, ApiError, Conflict, UpstreamTimeout, UpstreamUnavailable
from api.forwarding.id_token import IdTokenProvider, NoAuth, TokenProvider
from api.forwarding.retry import RetryPolicy, parse_retry_after
from api.generations.schemas import Face
from api.observability import tracing

# What a client is told to wait when the function gave no Retry-After of its own.
DEFAULT_RETRY_AFTER_S = 5

RETRYABLE_STATUSES = frozenset({429, 503})
# The moment (Unix time, seconds) after which the function must store nothing: it is sent a
# little before the API stops waiting (STORE_MARGIN_S), so that a store the function starts just
# in time still lands before the API gives up and cleans up what the attempt left.
DEADLINE_HEADER = "X-Request-Deadline"
STORE_MARGIN_S = 2.0


def deadline_budget_s(timeout_s: float) -> float:
    """How long after sending a request its deadline falls: the timeout less the store margin
    (at most a quarter of a short timeout)."""
    return timeout_s - min(STORE_MARGIN_S, timeout_s / 4)


FACES = TypeAdapter(list[Face])

# httpcore's pool scans every connection for every queued request and release (quadratic: see
# encode/httpcore#1035). At 500 requests in flight that scan was half the API's CPU, so the
# connections are spread over several small pools of at most this many each.
CONNECTIONS_PER_POOL = 32


@dataclass(frozen=True)
class Target:
    """One animal to compose, and the generation its result is stored for."""

    generation_id: uuid.UUID
    animal: str


@dataclass(frozen=True)
class FunctionRequest:
    """One prepared upload (metadata stripped) to send to the function, with the animals to
    make of it: one (a generation) or several (a pack's, the face found once), all drawn in
    one `style` (api.animals.STYLES)."""

    image: bytes
    content_type: str
    user_id: uuid.UUID
    targets: tuple[Target, ...]
    style: str

    @property
    def generation_ids(self) -> tuple[uuid.UUID, ...]:
        return tuple(target.generation_id for target in self.targets)


@dataclass(frozen=True)
class Stored:
    """One animal's stored result."""

    object_name: str
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionResult:
    """What the API keeps of the function's 200 answer: the faces, and for each generation its
    stored result or its own error (one animal of a pack may fail while the others succeed)."""

    faces: list[dict[str, Any]]
    outcomes: dict[uuid.UUID, Stored | ApiError]

    def outcome(self, generation_id: uuid.UUID) -> Stored | ApiError:
        """The result for one generation of the request."""
        found = self.outcomes.get(generation_id)
        if found is None:
            msg = "the avatar function's answer left out an animal"
            return UpstreamUnavailable(msg, retry_after_s=DEFAULT_RETRY_AFTER_S)
        return found


class NoAnswerInTime(UpstreamTimeout):
    """The request reached the function, which did not answer in time: it may still be
    working, and storing until the deadline it was sent."""


class AnswerLost(UpstreamUnavailable):
    """The connection broke after the request went out: the function may still be working."""


# The API gave up without an answer: what the function stores may land after the clean-up.
IN_FLIGHT = (NoAnswerInTime, AnswerLost)


RESULT_EXISTS = "an earlier attempt's result was in the way; please try again"


class ResultExists(UpstreamUnavailable):
    """The function's create-only store found a result under a generation's name (its 409
    `conflict`): an earlier attempt's, which no record points to. The runner drops it and asks
    once more; a client only sees this, as a retryable 503, if that fails too."""


class _RetryableError(Exception):
    def __init__(self, error: ApiError, retry_after_s: float | None) -> None:
        super().__init__(error.detail)
        self.error = error
        self.retry_after_s = retry_after_s


class FunctionClient:
    """Posts uploads to the function over shared pools; retries only what is safe to retry."""

    def __init__(
        self,
        pools: Sequence[httpx.AsyncClient],
        url: str,
        *,
        tokens: TokenProvider | None = None,
        policy: RetryPolicy,
        deadline_s: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`deadline_s`: each attempt tells the function to store nothing this long after it
        was sent (DEADLINE_HEADER); None sends no deadline."""
        self._pools = list(pools)
        self._deadline_s = deadline_s
        # Requests in flight per pool (queued for a connection included).
        self._in_flight = [0] * len(self._pools)
        self._url = url
        self._tokens = tokens or NoAuth()
        self._policy = policy
        self._sleep = sleep
        self._clock = clock

    async def generate(self, request: FunctionRequest) -> FunctionResult:
        """Run one generation on the function; raises an ApiError with a SPEC code on failure."""
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(request)
            except _RetryableError as retryable:
                delay = self._policy.delay_s(attempt, retryable.retry_after_s)
                if not self._policy.may_retry(attempt, self._clock() - started, delay):
                    raise retryable.error from None
            await self._sleep(delay)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        for pool in self._pools:
            await pool.aclose()

    async def _attempt(self, request: FunctionRequest) -> FunctionResult:
        try:
            response = await self._post(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached the function, so trying again cannot run the work twice.
            error = UpstreamUnavailable(
                "the avatar function is unreachable", retry_after_s=DEFAULT_RETRY_AFTER_S
            )
            raise _RetryableError(error, None) from exc
        except httpx.PoolTimeout as exc:
            msg = "too many generations in flight; try again shortly"
            raise UpstreamUnavailable(msg, retry_after_s=DEFAULT_RETRY_AFTER_S) from exc
        except httpx.TimeoutException as exc:
            raise NoAnswerInTime("the avatar function did not answer in time") from exc
        except httpx.TransportError as exc:
            msg = "the connection to the avatar function failed"
            raise AnswerLost(msg, retry_after_s=DEFAULT_RETRY_AFTER_S) from exc
        return self._read(response, request)

    async def _post(self, request: FunctionRequest) -> httpx.Response:
        body, content_type = encode_form(request)
        # The function logs its lines under the same trace as the request that called it.
        headers = {"Content-Type": content_type, **tracing.outgoing_headers()}
        if self._deadline_s is not None:
            # Wall-clock time: the function compares it with its own clock.
            headers[DEADLINE_HEADER] = f"{time.time() + self._deadline_s:.3f}"
        authorization = await self._tokens.authorization()
        if authorization:
            headers["Authorization"] = authorization
        pool = self._least_busy_pool()
        self._in_flight[pool] += 1
        try:
            return await self._pools[pool].post(self._url, headers=headers, content=body)
        finally:
            self._in_flight[pool] -= 1

    def _least_busy_pool(self) -> int:
        """The pool with the fewest requests in flight, the first one on a tie.

        Under light load every request takes the first pool and reuses its warm connections
        (taking the pools in turn opened a new connection for nearly every request, ~2 ms
        each); under a burst the requests spread evenly over all of them.
        """
        in_flight = self._in_flight
        return in_flight.index(min(in_flight))

    def _read(self, response: httpx.Response, request: FunctionRequest) -> FunctionResult:
        if response.status_code == 200:
            return parse_success(response, request)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status_code in (401, 403):
            self._tokens.invalidate()
        error = parse_failure(response, retry_after)
        if response.status_code in RETRYABLE_STATUSES:
            raise _RetryableError(error, retry_after)
        raise error


def encode_form(request: FunctionRequest) -> tuple[bytes, str]:
    """The multipart/form-data body for the function, and its Content-Type: `animal` and
    `generation_id` for one animal, else `animals` and `generation_ids` (comma lists); and the
    `style` they are drawn in.

    Written by hand because every field is a known, plain token: httpx's general encoder cost
    a millisecond of CPU per request, a third of the forwarding.
    """
    boundary = uuid.uuid4().hex
    fields = {"user_id": str(request.user_id), "style": request.style}
    if len(request.targets) == 1:
        fields["animal"] = request.targets[0].animal
        fields["generation_id"] = str(request.targets[0].generation_id)
    else:
        fields["animals"] = ",".join(target.animal for target in request.targets)
        fields["generation_ids"] = ",".join(str(gid) for gid in request.generation_ids)
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="upload"\r\n'
        f"Content-Type: {request.content_type}\r\n\r\n"
    )
    body = b"".join((head.encode(), request.image, f"\r\n--{boundary}--\r\n".encode()))
    return body, f"multipart/form-data; boundary={boundary}"


def parse_success(response: httpx.Response, request: FunctionRequest) -> FunctionResult:
    """The results in a 200 answer; anything unreadable is the function's fault (503)."""
    try:
        body = response.json()
        faces = body.get("faces") or []
        if not isinstance(faces, list):
            raise TypeError(faces)
        # Checked here, once: history shows these as typed faces on every read.
        faces = FACES.dump_python(FACES.validate_python(faces), exclude_none=True)
        timings = _timings(body.get("timings_ms"))
        if "results" in body:
            outcomes = _several(body["results"], request, timings)
        else:
            stored = Stored(_object_name(body["object_name"]), timings)
            outcomes = {request.targets[0].generation_id: stored}
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        msg = "the avatar function answered something unreadable"
        raise UpstreamUnavailable(msg, retry_after_s=DEFAULT_RETRY_AFTER_S) from exc
    return FunctionResult(faces=faces, outcomes=outcomes)


def _several(
    results: Any, request: FunctionRequest, shared: dict[str, float]
) -> dict[uuid.UUID, Stored | ApiError]:
    """Each animal's result of the `animals` form, by generation id: its object (with the
    shared stages' timings and its own) or its error."""
    if not isinstance(results, list) or len(results) != len(request.targets):
        raise TypeError("results")
    outcomes: dict[uuid.UUID, Stored | ApiError] = {}
    # In request order; each names its generation too, and the two must agree.
    for target, result in zip(request.targets, results, strict=True):
        if uuid.UUID(str(result["generation_id"])) != target.generation_id:
            raise ValueError("results out of order")
        code = result.get("error")
        if code is None:
            timings = {**shared, **_timings(result.get("timings_ms"))}
            outcomes[target.generation_id] = Stored(_object_name(result["object_name"]), timings)
        else:
            outcomes[target.generation_id] = _animal_error(code, result.get("detail"))
    return outcomes


def _animal_error(code: Any, detail: Any) -> ApiError:
    """One animal's failure as an API error: the function's code when it is one we pass on."""
    text = str(detail or code)
    retry_after = DEFAULT_RETRY_AFTER_S if code == "upstream_unavailable" else None
    error = _function_error(code, text, retry_after)
    return error or UpstreamUnavailable(text, retry_after_s=DEFAULT_RETRY_AFTER_S)


def _function_error(code: Any, detail: str, retry_after_s: int | None) -> ApiError | None:
    """The API's error for a code the function answered with, if it is one the API takes on:
    passed on as it is, or (`conflict`) handled by the runner; None for any other."""
    if code == Conflict.code:
        # In our words: the function's names its storage path, none of the client's business.
        return ResultExists(RESULT_EXISTS, retry_after_s=retry_after_s or DEFAULT_RETRY_AFTER_S)
    if code in FUNCTION_CODES:
        return ApiError.from_code(code, detail, retry_after_s=retry_after_s)
    return None


def _object_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(value)
    return value


def _timings(value: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in (value or {}).items()}


def parse_failure(response: httpx.Response, retry_after_s: float | None) -> ApiError:
    """The API error for a non-200 answer: the function's own code when it is one we pass on."""
    retry_after = int(retry_after_s) if retry_after_s is not None else DEFAULT_RETRY_AFTER_S
    code, detail = _error_body(response)
    error = _function_error(code, detail, retry_after)
    if error is not None and response.status_code not in RETRYABLE_STATUSES:
        return error
    if response.status_code == 504:
        return UpstreamTimeout("the avatar function timed out")
    msg = f"the avatar function is unavailable (HTTP {response.status_code})"
    if code == "upstream_unavailable" and detail:
        msg = detail
    return UpstreamUnavailable(msg, retry_after_s=retry_after)


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, ""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return None, ""
    return body["error"], str(body.get("detail") or body["error"])


def pool_sizes(total: int, per_pool: int) -> list[int]:
    """`total` connections over the fewest pools of at most `per_pool`, as evenly as possible.

    A burst fills the pools evenly, so a small remainder pool (1000 = 31 x 32 + 8) would run
    out of connections while the others still had room.
    """
    count = max(1, math.ceil(total / per_pool))
    base, extra = divmod(total, count)
    return [base + 1] * extra + [base] * (count - extra)


def build_function_client(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> FunctionClient:
    """The process's one client, pooled and timed out as configured (built in lifespan)."""
    total = settings.function_max_connections
    sizes = pool_sizes(total, CONNECTIONS_PER_POOL)
    timeout = httpx.Timeout(
        settings.function_timeout_s,
        connect=settings.function_connect_timeout_s,
        pool=settings.function_timeout_s,
    )
    tls = httpx.create_ssl_context()  # one for all pools: each costs tens of ms to build
    pools = [
        httpx.AsyncClient(
            transport=transport,
            verify=tls,
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            timeout=timeout,
        )
        for size in sizes
    ]
    tokens: TokenProvider = (
        IdTokenProvider(settings.function_url) if settings.function_auth == "id_token" else NoAuth()
    )
    policy = RetryPolicy(
        max_attempts=settings.function_max_attempts, budget_s=settings.function_retry_budget_s
    )
    return FunctionClient(
        pools,
        settings.function_url,
        tokens=tokens,
        policy=policy,
        deadline_s=deadline_budget_s(settings.function_timeout_s),
    )
