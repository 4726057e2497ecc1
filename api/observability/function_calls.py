"""The function's calls, timed: a Forwarder (api.generations.runner) around another."""

from __future__ import annotations

import time

from api.errors import ApiError
from api.forwarding.client import FunctionRequest, FunctionResult
from api.generations.runner import Forwarder
from api.observability.metrics import Metrics


class TimedForwarder:
    """Records each call's time by outcome (`ok`, or the error code it raised), and the
    stages the function timed itself."""

    def __init__(self, forwarder: Forwarder, metrics: Metrics) -> None:
        self._forwarder = forwarder
        self._metrics = metrics

    async def generate(self, request: FunctionRequest) -> FunctionResult:
        started = time.perf_counter()
        try:
            result = await self._forwarder.generate(request)
        except ApiError as error:
            self._metrics.function_failed(error.code, time.perf_counter() - started)
            raise
        except Exception:
            self._metrics.function_failed(ApiError.code, time.perf_counter() - started)
            raise
        self._metrics.function_answered(result, time.perf_counter() - started)
        return result

    async def aclose(self) -> None:
        await self._forwarder.aclose()
