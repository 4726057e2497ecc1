"""/docs (Swagger UI) and /redoc work offline: every asset they load is served by the API itself
(fastapi-offline's copies, under /docs/assets), none comes from a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from api_testing import assert_problem

DOC_PAGES = ("/docs", "/redoc")
ASSET_PREFIX = "/docs/assets/"


class PageLinks(HTMLParser):
    """The URLs a page loads, as (tag, rel, url): <script src>, <link href>, <img src>..."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []
        self.spec_urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name in ("src", "href", "srcset", "poster", "data", "action"):
            if name in values:
                self.links.append((tag, values.get("rel", ""), values[name]))
        if "spec-url" in values:  # ReDoc's <redoc spec-url="...">
            self.spec_urls.append(values["spec-url"])


async def page_links(client: httpx.AsyncClient, path: str) -> PageLinks:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    parser = PageLinks()
    parser.feed(response.text)
    parser.close()
    return parser


def expected_type(tag: str, rel: str) -> tuple[str, int]:
    """The content type an asset must have (a prefix), and its least plausible size in bytes."""
    if tag == "script":
        return "text/javascript", 10_000
    if tag == "link" and "stylesheet" in rel.split():
        return "text/css", 10_000
    if tag == "link" and "icon" in rel.split():
        return "image/", 100
    raise AssertionError(f"an unexpected asset: <{tag} rel={rel!r}>")


@pytest.mark.parametrize("path", DOC_PAGES)
async def test_doc_pages_load_nothing_from_another_host(client, path) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    # No absolute URL anywhere in the page, not even in its inline script.
    assert not re.search(r"https?://", response.text, re.IGNORECASE), response.text
    links = (await page_links(client, path)).links
    assert any(tag == "script" for tag, _, _ in links), links
    for _, _, url in links:
        # A path on the API itself: not scheme-relative (//cdn...), no scheme (http:, data:).
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        assert url.startswith(ASSET_PREFIX), url


@pytest.mark.parametrize("path", DOC_PAGES)
async def test_doc_assets_are_served_by_the_api(client, path) -> None:
    links = (await page_links(client, path)).links
    for tag, rel, url in links:
        content_type, least_size = expected_type(tag, rel)
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(content_type), (url, response.headers)
        assert len(response.content) >= least_size, url


async def test_swagger_ui_gets_the_api_own_openapi_document(client) -> None:
    response = await client.get("/docs")
    assert re.search(r"""\burl:\s*['"]/openapi\.json['"]""", response.text), response.text
    assert "swagger-ui-bundle.js" in response.text
    assert (await client.get("/openapi.json")).status_code == 200


async def test_redoc_gets_the_api_own_openapi_document(client) -> None:
    parser = await page_links(client, "/redoc")
    assert parser.spec_urls == ["/openapi.json"]
    assert [url for tag, _, url in parser.links if tag == "script"] == [
        f"{ASSET_PREFIX}redoc.standalone.js"
    ]


async def test_docs_and_their_assets_are_not_in_the_openapi_document(client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc", "/openapi"))], list(paths)


async def test_an_unknown_asset_is_a_problem_404(client) -> None:
    # (No "../" case: httpx drops dot segments before sending; StaticFiles refuses them anyway.)
    for url in (f"{ASSET_PREFIX}missing.js", ASSET_PREFIX):
        assert_problem(await client.get(url), 404, "not_found")
