"""Google OIDC tokens on the work endpoint: signature, expiry, audience and issuer checked by
google-auth against Google's published certificates, then the account.

The certificates are cached for as long as Google's Cache-Control allows, and fetched again
(at most once a minute) when a token names a key the cache does not hold: keys rotate.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
from google.auth import jwt

from api.errors import Forbidden, Unauthorized

logger = logging.getLogger(__name__)

GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
DEFAULT_CERTS_TTL_S = 300.0
MIN_REFETCH_S = 60.0
CLOCK_SKEW_S = 10
MAX_AGE = re.compile(r"max-age=(\d+)")


class OidcVerifier:
    """Checks `Authorization: Bearer <Google ID token>` for one audience and one account."""

    def __init__(self, certs_url: str, http: httpx.AsyncClient) -> None:
        self._certs_url = certs_url
        self._http = http
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()

    async def verify(self, authorization: str | None, *, audience: str, email: str) -> None:
        """Pass a token of `email` for `audience`; 401 for no or an invalid token, 403 for a
        valid token of another account."""
        token = _bearer(authorization)
        certs = await self._certs_for(_key_id(token))
        try:
            claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=certs, audience=audience, clock_skew_in_seconds=CLOCK_SKEW_S
            )
        except (ValueError, TypeError, KeyError) as exc:
            # google-auth's answer to a bad signature, an expired token, another audience.
            logger.info("a work token was refused: %s", exc)
            raise Unauthorized("the token is not valid for this endpoint") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthorized("the token was not issued by Google")
        if claims.get("email") != email or claims.get("email_verified") is not True:
            raise Forbidden("the token's account may not run work")

    async def _certs_for(self, key_id: str | None) -> dict[str, str]:
        now = time.monotonic()
        fresh = now < self._expires
        known = key_id is None or key_id in self._certs
        if fresh and known:
            return self._certs
        async with self._lock:
            now = time.monotonic()
            stale = now >= self._expires
            unknown = key_id is not None and key_id not in self._certs
            if stale or (unknown and now - self._fetched >= MIN_REFETCH_S):
                await self._fetch(now)
        return self._certs

    async def _fetch(self, now: float) -> None:
        try:
            response = await self._http.get(self._certs_url, timeout=5.0)
            response.raise_for_status()
            certs = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            if self._certs:
                # Keep the keys we have (a valid token still verifies with them), and do not ask
                # again on every request while the issuer is down.
                self._expires = now + MIN_REFETCH_S
                return
            raise Unauthorized("the token's certificates could not be fetched") from exc
        if not isinstance(certs, dict):
            raise Unauthorized("the token's certificates could not be read")
        self._certs = {str(key): str(value) for key, value in certs.items()}
        self._fetched = now
        match = MAX_AGE.search(response.headers.get("cache-control", ""))
        self._expires = now + (float(match[1]) if match else DEFAULT_CERTS_TTL_S)


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a Google OIDC token is required: Authorization: Bearer <token>")
    return token.strip()


def _key_id(token: str) -> str | None:
    """The `kid` of the token's header (unverified: it only picks the certificate)."""
    try:
        header_b64 = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("the token is not a JWT") from None
    key_id = header.get("kid") if isinstance(header, dict) else None
    return key_id if isinstance(key_id, str) else None
