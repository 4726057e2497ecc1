"""gcp-storage-emulator in the test process: the one local Cloud Storage the tests use."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

# The emulator stands in for Google's servers: its line per request (a signed URL's query
# included) is not a log of ours, and stays out of the test run's (tests/conftest.py scans it).
logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)


@contextmanager
def storage_emulator(bucket: str) -> Iterator[str]:
    """The emulator (in memory, on a free loopback port) with `bucket`; yields its base URL."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._api._httpd.server_address[1]}"
    finally:
        server.stop()
