"""Building Google clients: lazily, once per instance, over REST, endpoints from settings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built on first use, once, even when several threads ask at the same time."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value


def client_kwargs(endpoint: str | None) -> dict[str, Any]:
    """Keyword arguments for a google-cloud client: REST transport, optional endpoint override.

    A plain-http endpoint is a local fake: it gets anonymous credentials. Otherwise the client
    finds Application Default Credentials itself (google.auth.default()).
    """
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    kwargs: dict[str, Any] = {"transport": "rest"}
    if endpoint:
        kwargs["client_options"] = ClientOptions(api_endpoint=endpoint)
        if endpoint.startswith("http://"):
            kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return kwargs
