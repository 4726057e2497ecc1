"""Uploads: the multipart body of a generation request, read as a stream under a size limit.

The body is never held whole before its size is known to be acceptable: a Content-Length over the
limit is refused at once, and a body without one is counted as it streams. A non-image is refused
as soon as its first bytes are in. What is done to the image's bytes is api.images' business.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from api.animals import ANIMAL_IDS, CATALOGUE_ORDER, DEFAULT_STYLE, STYLES, animal_id, style_id
from api.config import Settings
from api.errors import (
    BadRequest,
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
    UnsupportedImage,
    size_text,
)
from api.images import NOT_AN_IMAGE, SNIFF_BYTES, sniff

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Room in the body for the boundaries, part headers and the fields (`animal`, `style`) around
# the image.
FORM_OVERHEAD_BYTES = 64 * 1024
MAX_FIELD_BYTES = 1024
# Fields either form may add to its `animal` or `animals`.
OPTIONAL_FIELDS = ("style",)


@dataclass(frozen=True)
class Upload:
    """The raw fields of a generation request (one animal) or a pack's (several)."""

    image: bytes
    animals: tuple[str, ...]
    # SHA-256 over the animals, the style and the raw image bytes: tells a retry from a reused
    # Idempotency-Key; None when not asked for (no key came, nothing to compare it with).
    request_hash: str | None
    # How every animal is drawn (api.animals.STYLES).
    style: str

    @property
    def animal(self) -> str:
        """The animal of a single generation's request."""
        return self.animals[0]


def request_hash(animals: tuple[str, ...], style: str, image_digest: bytes) -> str:
    """The idempotency fingerprint of a request: its animals, in order, its style and its
    image's SHA-256. The default style adds nothing, so a request without one has the same
    fingerprint as before styles existed: its retry across the upgrade finds its record."""
    head = ",".join(animals) + ("" if style == DEFAULT_STYLE else f"\n{style}")
    return hashlib.sha256(head.encode() + b"\n" + image_digest).hexdigest()


def parse_animals(value: str) -> tuple[str, ...]:
    """A pack's `animals`: a comma list of catalogue ids, or `all` (the catalogue's order);
    InvalidRequest naming the choices for an empty list, an unknown animal or a repeat."""
    choices = f"choose from: {', '.join(sorted(ANIMAL_IDS))}, or `all`"
    if value.strip().lower() == "all":
        return CATALOGUE_ORDER
    names = [name for name in value.split(",") if name.strip()]
    if not names:
        raise InvalidRequest(f"`animals` is empty; {choices}")
    animals = []
    for name in names:
        animal = animal_id(name)
        if animal is None:
            raise InvalidRequest(f"unknown animal {name.strip()!r}; {choices}")
        if animal in animals:
            raise InvalidRequest(f"{animal!r} is named twice in `animals`; {choices}")
        animals.append(animal)
    return tuple(animals)


def parse_style(value: str | None) -> str:
    """An upload's `style`: `character` when absent or empty; InvalidRequest naming the
    choices for any other than api.animals.STYLES (trimmed, any case)."""
    if not value:
        return DEFAULT_STYLE
    style = style_id(value)
    if style is None:
        raise InvalidRequest(f"unknown style; choose one of: {', '.join(STYLES)}")
    return style


class _FormCollector:
    """Callbacks for python-multipart: keeps the `image` part (capped), the `animal` (or
    `animals`) field and the optional ones (OPTIONAL_FIELDS).

    The image is kept as the chunks it arrived in (a full-chunk slice is the chunk itself, no
    copy) and joined once at the end; it is hashed as it streams when `fingerprint` is asked.
    """

    def __init__(self, max_image_bytes: int, *, fingerprint: bool, field: str) -> None:
        self.max_image_bytes = max_image_bytes
        self.field = field
        self.image: list[bytes] | None = None
        self.image_bytes = 0
        self.image_digest = hashlib.sha256() if fingerprint else None
        self.fields: dict[str, bytearray] = {}
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._field: bytearray | None = None
        self._in_image = False
        self._part_name = ""
        self._head = b""

    def text(self, name: str) -> str | None:
        """A field's value as text; None when it was not sent."""
        raw = self.fields.get(name)
        return None if raw is None else raw.decode("utf-8", "replace")

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_part_begin(self) -> None:
        self._disposition = b""
        self._field = None
        self._in_image = False

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        self._part_name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._part_name == "image":
            if self.image is not None:
                raise InvalidRequest("send one `image` file, not several")
            self.image, self._in_image = [], True
        elif self._part_name in (self.field, *OPTIONAL_FIELDS):
            if self._part_name in self.fields:
                msg = f"send one `{self._part_name}` field, not several"
                if self._part_name == "animals":
                    msg += " (name several animals in one, as a comma list)"
                raise InvalidRequest(msg)
            self._field = self.fields[self._part_name] = bytearray()

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_image:
            self._on_image_data(data[start:end])
        elif self._field is not None:
            self._field += data[start:end]
            if len(self._field) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"the `{self._part_name}` field is too long")

    def _on_image_data(self, chunk: bytes) -> None:
        assert self.image is not None
        self.image.append(chunk)
        self.image_bytes += len(chunk)
        if self.image_bytes > self.max_image_bytes:
            raise _too_large(self.max_image_bytes)
        if self.image_digest is not None:
            self.image_digest.update(chunk)
        # Refuse a non-image as soon as its first bytes are in, not after reading it all.
        if len(self._head) < SNIFF_BYTES:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]
            if len(self._head) == SNIFF_BYTES and sniff(self._head) is None:
                raise UnsupportedImage(NOT_AN_IMAGE)

    def _on_part_end(self) -> None:
        self._field = None
        self._in_image = False

    def _on_end(self) -> None:
        self.ended = True


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("send multipart/form-data with an `image` file and an `animal` field")
    return boundary


def _too_large(max_image_bytes: int) -> ImageTooLarge:
    """The one answer to an upload over the limit, whether the image part or the whole body
    (which may hold the form's few fields too, FORM_OVERHEAD_BYTES) passed it: the limit a
    person is told is the image's, in the README's unit."""
    return ImageTooLarge(f"the upload is over the {size_text(max_image_bytes)} limit for an image")


def _check_declared_length(request: Request, max_image_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise BadRequest("the Content-Length header is not a number")
    if int(declared) > max_image_bytes + FORM_OVERHEAD_BYTES:
        raise _too_large(max_image_bytes)


async def _feed(
    parser: MultipartParser, chunks: AsyncIterator[bytes], max_image_bytes: int
) -> None:
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > max_image_bytes + FORM_OVERHEAD_BYTES:
            raise _too_large(max_image_bytes)
        parser.write(chunk)
    parser.finalize()


async def read_upload(
    request: Request, settings: Settings, *, fingerprint: bool, several: bool = False
) -> Upload:
    """The `image`, `animal` (or, `several`, a pack's `animals`) and optional `style` of a
    multipart request, read as a stream under the size limit.

    `fingerprint`: also compute the request's hash (for an Idempotency-Key to compare).
    """
    _check_declared_length(request, settings.max_upload_bytes)
    field = "animals" if several else "animal"
    form = _FormCollector(settings.max_upload_bytes, fingerprint=fingerprint, field=field)
    try:
        parser = MultipartParser(_boundary(request), form.callbacks())
        await _feed(parser, request.stream(), settings.max_upload_bytes)
    except (MultipartParseError, FormParserError) as exc:
        raise BadRequest("the multipart body is malformed") from exc
    except ClientDisconnect as exc:
        raise BadRequest("the upload was interrupted") from exc
    if not form.ended:
        raise BadRequest("the multipart body ends before its closing boundary")
    return _upload_from(form)


def _upload_from(form: _FormCollector) -> Upload:
    if form.image is None:
        raise InvalidRequest("the `image` file is required")
    value = form.text(form.field)
    if value is None:
        raise InvalidRequest(f"the `{form.field}` field is required")
    animals = _animals(form.field, value)
    style = parse_style(form.text("style"))
    image = b"".join(form.image)
    if not image:
        raise InvalidImage("the image is empty")
    if sniff(image[:SNIFF_BYTES]) is None:
        raise UnsupportedImage(NOT_AN_IMAGE)
    digest = form.image_digest
    fingerprint = request_hash(animals, style, digest.digest()) if digest else None
    return Upload(image, animals, fingerprint, style)


def _animals(field: str, value: str) -> tuple[str, ...]:
    if field == "animals":
        return parse_animals(value)
    animal = animal_id(value)
    if animal is None:
        msg = f"unknown animal; choose one of: {', '.join(sorted(ANIMAL_IDS))}"
        raise InvalidRequest(msg)
    return (animal,)
