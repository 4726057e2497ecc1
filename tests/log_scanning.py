"""What no log line may carry, and the scan of a whole test run's logs for it (tests/conftest.py
runs it when the session ends; tests/test_log_scanning.py shows it finds each kind)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Each kind of secret or personal datum, as it would appear in a line.
FORBIDDEN: dict[str, re.Pattern[str]] = {
    # api/security.py: "aa_" + token_urlsafe(32)
    "api key": re.compile(r"\baa_[A-Za-z0-9_-]{43}"),
    "bearer token": re.compile(r"Bearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    # api/webhooks/secrets.py: "whsec_" + base64 of 32 bytes
    "webhook secret": re.compile(r"whsec_[A-Za-z0-9+/]{20,}"),
    # Standard Webhooks: "v1," + base64 of an HMAC-SHA256
    "webhook signature": re.compile(r"\bv1,[A-Za-z0-9+/]{43}="),
    # A signed link's signature: the local /media links', and GCS V4 URLs'
    "link signature": re.compile(r"[?&](signature|X-Goog-Signature)=[^&\s\"']{8,}", re.I),
    # (a Google service account's address names no person)
    "email": re.compile(
        r"[A-Za-z0-9._%+-]+@(?!\S*gserviceaccount\.com)[A-Za-z0-9-]+\.[A-Za-z.]{2,}"
    ),
    # The tests' configured secrets (tests/api/api_testing.py, process_testing.py, ...)
    "configured secret": re.compile(
        r"(test|e2e)-(admin-key|media-signing-key|webhook-encryption-key)"
    ),
    # Image bytes, raw or base64 (JPEG, PNG)
    "image bytes": re.compile(r"(\\+x|\\+u00)ff(\\+x|\\+u00)d8|\xff\xd8\xff|/9j/4|iVBORw0KGgo"),
}


@dataclass(frozen=True)
class Finding:
    path: Path
    line_number: int
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_number}: {self.kind}: {self.excerpt}"


def scan_lines(path: Path, lines: Iterable[str]) -> Iterator[Finding]:
    for number, line in enumerate(lines, 1):
        for kind, pattern in FORBIDDEN.items():
            match = pattern.search(line)
            if match is not None:
                start = max(match.start() - 40, 0)
                yield Finding(path, number, kind, line[start : match.end() + 40].strip())


def scan(paths: Iterable[Path]) -> list[Finding]:
    """Every forbidden thing in these log files."""
    found: list[Finding] = []
    for path in paths:
        with path.open(errors="replace") as lines:
            found.extend(scan_lines(path, lines))
    return found


def log_files(root: Path) -> list[Path]:
    """The logs a test run left under its temporary folder: every server's (tests/api's
    process_testing writes api.log and function.log) and the in-process one."""
    return sorted(path for path in root.rglob("*.log") if path.is_file())
