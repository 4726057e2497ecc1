"""GET / and its files, without a browser: the headers (a strict CSP, no Referer, nosniff),
conditional requests, the page's weight, no inline code or outside URL, and words for every
problem code (tests/api/test_demo_page.py drives the page itself in Chromium)."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

import httpx
import pytest
from api_testing import assert_problem, client_for
from conftest import AppFactory

from api.config import Settings
from api.demo.router import ASSETS, STATIC_DIR, content_security_policy
from api.errors import ApiError

PAGE_BUDGET_BYTES = 60_000
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


async def test_the_page_is_served_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = directives(page.headers["content-security-policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    # The local store's signed links are on the API's own origin; blob: is the photo's preview.
    assert csp["img-src"] == ["'self'", "http://testserver", "blob:"]
    assert csp["object-src"] == csp["base-uri"] == csp["form-action"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert b'<script src="/demo/app.js" defer></script>' in page.content


def test_with_cloud_storage_images_come_from_storage_googleapis_com(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(storage_backend="gcs", gcs_bucket="avatars")
    img_src = directives(content_security_policy(settings))["img-src"]
    assert img_src == ["'self'", "https://storage.googleapis.com", "blob:"]


async def test_an_operator_can_leave_the_page_out(app_factory: AppFactory) -> None:
    async with app_factory(demo_page=False) as app, client_for(app) as client:
        assert_problem(await client.get("/"), 404, "not_found")
        assert_problem(await client.get("/demo/app.js"), 404, "not_found")
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/demo/app.js", "text/javascript; charset=utf-8"),
        ("/demo/app.css", "text/css; charset=utf-8"),
        ("/demo/icon.svg", "image/svg+xml"),
    ],
)
async def test_the_files_are_served_with_their_type_and_revalidated_by_etag(
    client: httpx.AsyncClient, path: str, media_type: str
) -> None:
    first = await client.get(path)
    assert first.status_code == 200
    assert first.headers["content-type"] == media_type
    assert first.headers["x-content-type-options"] == "nosniff"
    assert first.headers["cache-control"] == "no-cache"
    again = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    changed = await client.get(path, headers={"If-None-Match": '"another-version"'})
    assert changed.status_code == 200
    head = await client.head(path)
    assert head.status_code == 200
    assert head.content == b""


@pytest.mark.parametrize("path", ["/demo/nothing.js", "/demo/..%2Fconfig.py", "/demo/index.html"])
async def test_nothing_else_is_served_from_the_folder(client: httpx.AsyncClient, path: str) -> None:
    assert_problem(await client.get(path), 404, "not_found")


async def test_the_page_is_not_part_of_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith("/demo/")]


def test_the_page_weighs_under_60_kb() -> None:
    weight = sum((STATIC_DIR / name).stat().st_size for name in ("index.html", *ASSETS))
    assert weight <= PAGE_BUDGET_BYTES, f"{weight} bytes"


class InlineCode(HTMLParser):
    """What a CSP without 'unsafe-inline' would refuse: inline scripts, styles and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self._in_script = tag == "script"
        if tag == "script" and "src" not in names:
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"<{tag} {name}=...>" for name in names if name == "style"]
        self.found += [f"<{tag} {name}=...>" for name in names if name.startswith("on")]

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("script text")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_the_page_has_no_inline_code_and_no_outside_url() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    parser = InlineCode()
    parser.feed(html)
    assert parser.found == []
    for name in ("index.html", *ASSETS):
        text = (STATIC_DIR / name).read_text()
        outside = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text)) - {SVG_NAMESPACE}
        assert outside == set(), name
    script = (STATIC_DIR / "app.js").read_text()
    assert "innerHTML" not in script  # text goes in as text: nothing the API says becomes markup
    assert "eval(" not in script


def test_every_problem_code_of_the_api_has_words_on_the_page() -> None:
    script = (STATIC_DIR / "app.js").read_text()
    start = script.index("const MESSAGES = {")
    table = script[start : script.index("};", start)]
    worded = set(re.findall(r"^\s+(\w+): \[", table, re.MULTILINE))
    codes = set(ApiError.registry) | {ApiError.code}
    assert codes - worded == set()
    assert worded - codes == set()
