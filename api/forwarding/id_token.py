"""Google ID tokens for calling the function as the API's identity, cached until near expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import google.auth.exceptions

from api.errors import UpstreamUnavailable

# Refresh this long before the token's `exp`, so a token never expires in flight.
REFRESH_MARGIN_S = 300.0
# What a client is told to wait when no token could be had (the metadata server hiccuped).
TOKEN_RETRY_AFTER_S = 5


class TokenProvider(Protocol):
    """Answers the value of an `Authorization` header for the function, or None."""

    async def authorization(self) -> str | None: ...

    def invalidate(self) -> None: ...


class NoAuth:
    """No credentials: the local function, or a function behind a trusted network."""

    async def authorization(self) -> str | None:
        return None

    def invalidate(self) -> None:
        return None


def fetch_google_id_token(audience: str) -> str:
    """A fresh ID token for the audience from google-auth (blocking I/O: call it in a thread)."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    request = google.auth.transport.requests.Request()
    token: str = google.oauth2.id_token.fetch_id_token(request, audience)  # type: ignore[no-untyped-call]
    return token


def token_expiry(token: str) -> float:
    """The `exp` claim of a JWT as a Unix time (the signature is the issuer's business)."""
    from google.auth import jwt

    claims = jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
    return float(claims["exp"])


class IdTokenProvider:
    """A cached Google ID token for one audience; one refresh at a time (single flight)."""

    def __init__(
        self,
        audience: str,
        *,
        fetch: Callable[[str], str] = fetch_google_id_token,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._audience = audience
        self._fetch = fetch
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def authorization(self) -> str | None:
        """`Bearer <token>`, refreshed when it is within REFRESH_MARGIN_S of its expiry."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._refresh()
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        """Forget the token (the function refused it); the next call fetches a new one."""
        self._expires_at = 0.0

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at - REFRESH_MARGIN_S

    async def _refresh(self) -> None:
        # google-auth's errors are translated here, like httpx's in the client: a token that
        # cannot be had is the function being unreachable for now, worth a retry.
        try:
            token = await asyncio.to_thread(self._fetch, self._audience)
            expires_at = token_expiry(token)
        except (google.auth.exceptions.GoogleAuthError, ValueError, KeyError) as exc:
            msg = "could not get an ID token to call the avatar function"
            raise UpstreamUnavailable(msg, retry_after_s=TOKEN_RETRY_AFTER_S) from exc
        self._expires_at = expires_at
        self._token = token
