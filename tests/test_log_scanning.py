"""The whole-run log scan (tests/conftest.py) finds each kind of secret, and passes clean lines."""

from __future__ import annotations

import base64
import json
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from log_scanning import FORBIDDEN, log_files, scan

from api.security import generate_api_key


@pytest.fixture
def folder() -> Iterator[Path]:
    """Outside the run's temporary folder: the planted lines must not fail the run's own scan."""
    with tempfile.TemporaryDirectory(prefix="planted-logs-") as name:
        yield Path(name)


SIGNATURE = "v1," + base64.b64encode(secrets.token_bytes(32)).decode()
LEAKS = {
    "api key": f"user signed in with {generate_api_key()}",
    "bearer token": "Authorization: Bearer abcdefgh12345678",
    "webhook secret": "secret whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "webhook signature": f"webhook-signature: {SIGNATURE}",
    "link signature": "GET /media/u/g.png?expires=1&signature=0123456789abcdef",
    "email": "created user ada@example.com",
    "configured secret": "key test-admin-key-xxxx",
    "image bytes": "body b'\\xff\\xd8\\xff\\xe0'",
}


@pytest.mark.parametrize("kind", sorted(FORBIDDEN))
def test_each_kind_is_found_in_a_json_line(folder: Path, kind: str) -> None:
    log = folder / "api.log"
    lines = [{"severity": "INFO", "message": "GET /v1/animals 200"}, {"message": LEAKS[kind]}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))

    findings = scan(log_files(folder))

    assert [(f.kind, f.line_number) for f in findings] == [(kind, 2)]


def test_the_lines_the_service_writes_pass(tmp_path: Path) -> None:
    lines = [
        "POST /v1/generations 201 812.4 ms",
        "GET /media/2f1e/9a7c.png 200 1.2 ms",
        "webhook delivery 9a7c attempt 2: http_status 503 -> pending",
        "the function is misconfigured: MEDIA_SIGNING_KEY: must be a real secret",
        "token for api@my-project.iam.gserviceaccount.com refreshed",
        "user 2f1e signed in with key aa_Q3xk9Zp",  # a key's public prefix (10 characters)
    ]
    (tmp_path / "function.log").write_text("\n".join(lines))

    assert scan(log_files(tmp_path)) == []
