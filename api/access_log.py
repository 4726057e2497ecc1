"""Log hygiene: signed /media links must not leave their signatures in the server's log, and
httpx's line per request must not name a webhook's URL."""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"
HTTPX_LOGGER = "httpx"


class MediaQueryFilter(logging.Filter):
    """Strips the query string (expires, signature) from access-log lines for /media/ paths.

    A logged signature is a working link to someone's image until it expires.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs (client, method, path with query, http version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if path.startswith("/media/") and "?" in path:
                record.args = (*args[:2], path.split("?", 1)[0], *args[3:])
        return True


def install_access_log_filter() -> None:
    """Add the filter to uvicorn's access logger once (create_app may run many times)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, MediaQueryFilter) for f in logger.filters):
        logger.addFilter(MediaQueryFilter())


class RequestLineFilter(logging.Filter):
    """Drops httpx's INFO line per request ("HTTP Request: POST <url> ..."): for a webhook it
    names the owner's host and path, which logs must not carry. Failures are logged by the
    callers, without the URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("HTTP Request:"))


def install_httpx_log_filter() -> None:
    """Add the filter to httpx's logger once."""
    logger = logging.getLogger(HTTPX_LOGGER)
    if not any(isinstance(f, RequestLineFilter) for f in logger.filters):
        logger.addFilter(RequestLineFilter())
