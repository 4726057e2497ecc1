"""Request parsing: multipart, raw image body, JSON base64 or JSON gcs_uri -> AvatarRequest.

One `animal` (with an optional `generation_id`), or a pack: `animals` (a JSON list, or a comma
list in JSON, a form field or the query) with optional `generation_ids` in the same order.
Either may name a `style` (catalogue.RENDER_STYLES; `character` when absent) that every animal of
the request is drawn in.

By convention a caller that passes an image by reference first uploads it under `uploads/` of
the store (`gs://<GCS_BUCKET>/uploads/...`, or `uploads/...` for the local store); the stores
read nothing else, so a `gcs_uri` can never fetch someone's stored avatar.

Whatever the body, the `X-Request-Deadline` header (DEADLINE_HEADER) may give the moment, in
Unix seconds (a decimal number such as `1790000000.250`), after which the caller (the API) no
longer waits: the pipeline stores nothing once it has passed, so a late result cannot outlive
the caller's clean-up. Without it there is no deadline.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from avatar.catalogue import ANIMAL_IDS, DEFAULT_STYLE, RENDER_STYLES, get_animal
from avatar.config import Settings
from avatar.errors import ImageTooLarge, InvalidRequest, MethodNotAllowed, UnsupportedImage

SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
RAW_TYPES = ("image/", "application/octet-stream")
FACES_CHOICES = {"largest": False, "all": True}
# The API sends it (api.forwarding.client.DEADLINE_HEADER; tests/contract keeps them equal).
DEADLINE_HEADER = "X-Request-Deadline"
DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?")


@dataclass(frozen=True)
class AvatarRequest:
    """What to generate: the image (bytes, or a stored object's URI) and how to name the results.

    `animals` and `generation_ids` list every result, in request order (`animal` and
    `generation_id` are the first); `several` when the `animals` form asked, whose answer lists
    results even for one animal. `deadline`: the caller's (Unix time), or None. `style`: how
    the local compositor draws every animal of the request (catalogue.RENDER_STYLES).
    """

    animal: str
    user_id: str
    generation_id: str
    all_faces: bool
    image: bytes | None = None
    gcs_uri: str | None = None
    animals: tuple[str, ...] = ()
    generation_ids: tuple[str, ...] = ()
    several: bool = False
    deadline: float | None = None
    style: str = DEFAULT_STYLE

    @property
    def targets(self) -> tuple[tuple[str, str], ...]:
        """(animal, generation_id) of each result to make, in request order."""
        pairs = tuple(zip(self.animals, self.generation_ids, strict=True))
        return pairs or ((self.animal, self.generation_id),)  # built with `animal` alone


def parse_request(request: Request, settings: Settings) -> AvatarRequest:
    """Validate method, size and content type, then read the body once."""
    if request.method != "POST":
        raise MethodNotAllowed(f"{request.method} is not allowed: POST an image")
    read_limited(request, settings.max_request_bytes)
    deadline = parse_deadline(request.headers.get(DEADLINE_HEADER))
    try:
        job = read_body(request, settings)
    except RequestEntityTooLarge as exc:  # werkzeug caps non-file form fields at 500 kB
        raise ImageTooLarge("a form field is too large") from exc
    return replace(job, deadline=deadline)


def parse_deadline(value: str | None) -> float | None:
    """The caller's deadline header as Unix seconds; None when absent.

    Anything but a finite positive decimal number is InvalidRequest: a deadline the function
    cannot read would otherwise be ignored, and the caller's clean-up could race a late store.
    """
    if value is None:
        return None
    text = value.strip()
    if DECIMAL.fullmatch(text) and (deadline := float(text)) > 0:  # 20 digits: always finite
        return deadline
    msg = f"`{DEADLINE_HEADER}` must be a positive Unix time in seconds, e.g. 1790000000.250"
    raise InvalidRequest(msg)


def read_limited(request: Request, max_bytes: int) -> None:
    """Read (and cache) the body, 413 past `max_bytes`: Content-Length first, then counting.

    The local server has no cap of its own (Cloud Functions gen2 stops at 32 MB). Werkzeug
    parses forms from the cached body, and functions-framework's after-request drain reads it.
    """
    too_large = ImageTooLarge(f"request body is over the limit of {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        discard_body(request)
        raise too_large
    request.max_content_length = max_bytes + 1  # a streamed body is cut one byte past the limit
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        discard_body(request)
        raise too_large from exc
    if len(data) > max_bytes:
        raise too_large


def discard_body(request: Request) -> None:
    """Forget an unread over-limit body, so functions-framework's drain reads nothing."""
    request.max_content_length = None
    request.environ["wsgi.input"] = io.BytesIO()
    request.environ["CONTENT_LENGTH"] = "0"
    request.__dict__.pop("stream", None)  # werkzeug caches the (limited) stream here


def read_body(request: Request, settings: Settings) -> AvatarRequest:
    """Dispatch on Content-Type."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        return from_multipart(request, settings)
    if mimetype == "application/json":
        return from_json(request, settings)
    if mimetype.startswith(RAW_TYPES):
        return from_fields(request.args, settings, image=request.get_data())
    msg = f"Content-Type {mimetype or 'none'!r} is not accepted: send multipart, JSON or image/*"
    raise UnsupportedImage(msg)


def from_multipart(request: Request, settings: Settings) -> AvatarRequest:
    """Multipart: an `image` file part and form fields (query parameters as a fallback)."""
    upload = request.files.get("image")
    if upload is None:
        raise InvalidRequest("multipart body has no `image` file part")
    fields = {**request.args.to_dict(), **request.form.to_dict()}
    return from_fields(fields, settings, image=upload.read())


def from_json(request: Request, settings: Settings) -> AvatarRequest:
    """JSON: exactly one of `image_base64` or `gcs_uri`, plus the fields."""
    body = parse_json(request.get_data())
    if not isinstance(body, dict):
        raise InvalidRequest("body is not a JSON object")
    fields = {**request.args.to_dict(), **body}
    encoded, uri = fields.get("image_base64"), fields.get("gcs_uri")
    if (encoded is None) == (uri is None):
        raise InvalidRequest("give exactly one of `image_base64` or `gcs_uri`")
    if uri is not None:
        if not isinstance(uri, str) or not uri:
            raise InvalidRequest("`gcs_uri` must be a non-empty string")
        return from_fields(fields, settings, gcs_uri=uri)
    return from_fields(fields, settings, image=decode_base64(encoded))


def parse_json(data: bytes) -> Any:
    """The decoded JSON body; InvalidRequest when it is not JSON or nests too deeply."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # `[` x 100000 overflows the parser's stack
        raise InvalidRequest("body is not valid JSON") from exc


def decode_base64(value: Any) -> bytes:
    """Strict base64 (a `data:...;base64,` prefix allowed); InvalidRequest when malformed."""
    if not isinstance(value, str):
        raise InvalidRequest("`image_base64` must be a string")
    _, _, payload = value.rpartition(";base64,") if value.startswith("data:") else ("", "", value)
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("`image_base64` is not valid base64") from exc


def from_fields(
    fields: Any, settings: Settings, *, image: bytes | None = None, gcs_uri: str | None = None
) -> AvatarRequest:
    """Validate the shared fields: animal or animals, user_id, generation id(s), faces, style."""
    several = fields.get("animals") is not None
    animals, generation_ids = parse_pack(fields) if several else parse_single(fields)
    return AvatarRequest(
        animal=animals[0],
        user_id=safe_token(fields.get("user_id"), "user_id") or "anonymous",
        generation_id=generation_ids[0],
        all_faces=parse_faces(fields.get("faces")),
        image=image,
        gcs_uri=gcs_uri,
        animals=animals,
        generation_ids=generation_ids,
        several=several,
        style=parse_style(fields.get("style")),
    )


def parse_single(fields: Any) -> tuple[tuple[str], tuple[str]]:
    """The `animal` form: one catalogue id and its generation id (a fresh uuid4 hex if absent)."""
    animal = parse_animal(fields.get("animal"))
    if not absent(fields.get("generation_ids")):
        raise pack_error("`generation_ids` goes with `animals`, not with `animal`")
    generation_id = safe_token(fields.get("generation_id"), "generation_id") or uuid.uuid4().hex
    return (animal,), (generation_id,)


def parse_pack(fields: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The `animals` form: distinct catalogue ids and a generation id for each, in order."""
    if not absent(fields.get("animal")):
        raise pack_error("give `animal` or `animals`, not both")
    if not absent(fields.get("generation_id")):
        raise pack_error("with `animals`, name the results with `generation_ids`")
    animals = parse_animals(fields["animals"])
    return animals, parse_generation_ids(fields.get("generation_ids"), len(animals))


def parse_animals(value: Any) -> tuple[str, ...]:
    """1 to len(catalogue) distinct catalogue ids (trimmed, any case), in the given order."""
    entries = list_entries(value, "animals")
    if not entries:
        raise pack_error("`animals` is empty")
    if len(entries) > len(ANIMAL_IDS):
        raise pack_error(f"`animals` names {len(entries)}, more than the {len(ANIMAL_IDS)} known")
    ids: list[str] = []
    for entry in entries:
        animal = get_animal(entry) if isinstance(entry, str) else None
        if animal is None:
            raise pack_error(f"unknown animal {entry!r} in `animals`")
        if animal.id in ids:
            raise pack_error(f"`animals` names {animal.id!r} twice")
        ids.append(animal.id)
    return tuple(ids)


def parse_generation_ids(value: Any, count: int) -> tuple[str, ...]:
    """One distinct safe token per animal; a fresh uuid4 hex each when absent."""
    if absent(value):
        return tuple(uuid.uuid4().hex for _ in range(count))
    entries = list_entries(value, "generation_ids")
    if len(entries) != count:
        raise pack_error(f"`generation_ids` has {len(entries)} entries for {count} animals")
    if not all(isinstance(entry, str) and SAFE_TOKEN.fullmatch(entry) for entry in entries):
        raise pack_error("each of `generation_ids` must be 1-64 characters of A-Z a-z 0-9 _ -")
    if len(set(entries)) < len(entries):
        raise pack_error("`generation_ids` names a generation twice")
    return tuple(entries)


def list_entries(value: Any, field: str) -> list[Any]:
    """A JSON list as it is, or a comma list's trimmed entries ("" is the empty list)."""
    if isinstance(value, str):
        return [entry.strip() for entry in value.split(",")] if value.strip() else []
    if isinstance(value, list):
        return value
    raise pack_error(f"`{field}` must be a list or a comma-separated string")


def pack_error(problem: str) -> InvalidRequest:
    """InvalidRequest for the `animals` form: the problem, then the choices."""
    choices = ", ".join(sorted(ANIMAL_IDS))
    return InvalidRequest(f"{problem}: `animals` takes 1 to {len(ANIMAL_IDS)} of {choices}")


def absent(value: Any) -> bool:
    """Whether an optional field was left out (a form sends a blank field as "")."""
    return value is None or value == ""


def parse_animal(value: Any) -> str:
    """A catalogue animal id (required, as in the API); InvalidRequest naming the choices."""
    choices = ", ".join(sorted(ANIMAL_IDS))
    if value is None or value == "":
        raise InvalidRequest(f"animal is required (one of {choices})")
    animal = get_animal(value) if isinstance(value, str) else None
    if animal is None:
        raise InvalidRequest(f"unknown animal {value!r}: choose one of {choices}")
    return animal.id


def safe_token(value: Any, field: str) -> str | None:
    """None when absent; the value when it is [A-Za-z0-9_-]{1,64}; else InvalidRequest."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not SAFE_TOKEN.fullmatch(value):
        raise InvalidRequest(f"`{field}` must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def parse_style(value: Any) -> str:
    """A render style (trimmed, any case); `character` when absent; else InvalidRequest."""
    if absent(value):
        return DEFAULT_STYLE
    if isinstance(value, str) and (style := value.strip().lower()) in RENDER_STYLES:
        return style
    choices = " or ".join(f"`{name}`" for name in RENDER_STYLES)
    raise InvalidRequest(f"unknown style {value!r}: `style` must be {choices}")


def parse_faces(value: Any) -> bool:
    """`faces=all` composes every face; `largest` (the default) only the biggest."""
    if value is None or value == "":
        return False
    if not isinstance(value, str) or value.lower() not in FACES_CHOICES:
        raise InvalidRequest("`faces` must be `largest` or `all`")
    return FACES_CHOICES[value.lower()]
