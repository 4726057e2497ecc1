"""Translation of Google client and transport errors into the function's error family.

This is the one place where `google.api_core`, `google.auth`, protobuf and `requests` errors
become AvatarErrors; the adapters call `translate` and nothing else inspects them.
"""

from __future__ import annotations

import requests

from avatar.errors import AvatarError, UpstreamTimeout, UpstreamUnavailable

# What a client is told to wait when a quota error carries no Retry-After of its own.
DEFAULT_RETRY_AFTER_S = 30
RETRYABLE_STATUSES = frozenset({429, 503, 504})


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a google.api_core error (None for transport or parsing errors)."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) and 100 <= code < 600 else None


def is_retryable(exc: BaseException) -> bool:
    """Quota (429), UNAVAILABLE (503) and DEADLINE_EXCEEDED (504) are worth another attempt."""
    return http_status(exc) in RETRYABLE_STATUSES or _is_connection_error(exc)


def retry_after_s(exc: BaseException) -> int:
    """The server's Retry-After in seconds when it sent one, else a default."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = str(headers.get("Retry-After", "")).strip()
    return max(1, int(value)) if value.isdigit() else DEFAULT_RETRY_AFTER_S


def translate(exc: BaseException, service: str) -> AvatarError:
    """The AvatarError a failed call to `service` (e.g. "Cloud Vision") becomes."""
    if isinstance(exc, AvatarError):
        return exc
    status = http_status(exc)
    if status == 429:
        detail = f"{service} quota exhausted; try again later"
        return UpstreamUnavailable(detail, retry_after_s=retry_after_s(exc))
    if status == 504 or _is_timeout(exc):
        return UpstreamTimeout(f"{service} did not answer in time")
    if status is not None:
        detail = f"{service} answered HTTP {status}"
        return UpstreamUnavailable(detail, retry_after_s=DEFAULT_RETRY_AFTER_S)
    detail = f"{service} call failed: {type(exc).__name__}"
    return UpstreamUnavailable(detail, retry_after_s=DEFAULT_RETRY_AFTER_S)


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, requests.Timeout | TimeoutError)


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout)
