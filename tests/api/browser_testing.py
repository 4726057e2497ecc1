"""Debian's Chromium under Playwright (tests/api/test_demo_page.py), and what a page did.

Playwright's own browser download cannot work here: `make test` installs Debian's `chromium`
(scripts/install-chromium.sh) and Playwright drives it through `executable_path`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; fails (never skips) when it is missing."""
    if not CHROMIUM.exists():
        raise AssertionError(
            f"no Chromium at {CHROMIUM}: run `bash scripts/install-chromium.sh` (make test does)"
        )
    # Chromium's sandbox needs user namespaces, which a root container does not give.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)


@dataclass
class Watch:
    """What a page did: the requests it sent, and the errors it logged (CSP refusals included)."""

    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def follow(self, page: Page) -> None:
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _request(self, request: Request) -> None:
        self.requests.append(request)

    def _console(self, message: ConsoleMessage) -> None:
        # An API's 4xx is logged by the browser as a failed load: that is the page's business.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def urls(self) -> list[str]:
        return [request.url for request in self.requests]
