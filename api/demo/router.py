"""GET /: the demo page, a static page that speaks only the public API (api/demo/static).

The files are read once, when the app is built, and served from memory with an ETag. The page
gets a strict Content-Security-Policy: scripts, styles and requests only from this origin (no
inline script), images also from the origin of the signed image links (the API itself with the
local store, Cloud Storage with GCS) and `blob:` (the preview of the chosen photo), and no
Referer, which would carry a signed link to wherever the page leads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response

from api.config import Settings
from api.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
ASSET_PREFIX = "/demo/"
ASSETS = ("app.js", "app.css", "icon.svg")
# Written out, not guessed: `mimetypes` reads the machine's own tables (.js may come out as
# application/javascript, or anything a local /etc/mime.types says).
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
GCS_ORIGIN = "https://storage.googleapis.com"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def read(cls, path: Path) -> Asset:
        body = path.read_bytes()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        return cls(body, MEDIA_TYPES[path.suffix], etag)

    def response(self, request: Request, headers: dict[str, str]) -> Response:
        """The file, or 304 when the browser holds this version already."""
        headers = headers | {"ETag": self.etag, "Cache-Control": "no-cache"}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def image_sources(settings: Settings) -> list[str]:
    """Where the page's images come from: the signed links' origin, and the chosen photo."""
    if settings.storage_backend == "gcs":
        links = GCS_ORIGIN
    else:
        parts = urlsplit(settings.public_base_url)
        links = f"{parts.scheme}://{parts.netloc}"
    return ["'self'", links, "blob:"]


def content_security_policy(settings: Settings) -> str:
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": image_sources(settings),
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


# What every file of the page is sent with; the page itself adds its CSP.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def build_router(settings: Settings) -> APIRouter:
    """The page and its assets, read now, with headers for these settings."""
    page = Asset.read(STATIC_DIR / "index.html")
    assets = {name: Asset.read(STATIC_DIR / name) for name in ASSETS}
    page_headers = SECURITY_HEADERS | {
        "Content-Security-Policy": content_security_policy(settings),
        # The photo comes through the file picker (the phone's camera app with `capture`),
        # never getUserMedia: the page needs none of these.
        "Permissions-Policy": "geolocation=(), microphone=(), payment=(), usb=()",
    }
    router = APIRouter(tags=["demo"])

    @router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def demo_page(request: Request) -> Response:
        """The demo page."""
        return page.response(request, page_headers)

    @router.api_route(ASSET_PREFIX + "{name}", methods=["GET", "HEAD"], include_in_schema=False)
    async def demo_asset(name: str, request: Request) -> Response:
        """The page's script, style sheet and icon."""
        asset = assets.get(name)
        if asset is None:
            raise NotFound(f"no demo file {name!r}")
        return asset.response(request, SECURITY_HEADERS)

    return router
