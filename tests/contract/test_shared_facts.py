"""The facts the API and the function must agree on, each written on its own side.

The two are deployed apart (the API's image, the function's folder) and import nothing of each
other, so the catalogue, the error codes, the object names, the media-link signature and the
magic bytes exist twice. These tests are the only place that imports both sides: any drift fails
here.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from api import animals as api_animals
from api import errors as api_errors
from api import uploads as api_uploads
from api.forwarding import client as api_forwarding
from api.images import sniff as api_sniff
from api.security import media_signature, media_signature_valid
from api.storage import check_object_name, generation_prefix, user_prefix
from api.storage.local import LocalFileStore as ApiStore
from avatar import catalogue as function_catalogue
from avatar import errors as function_errors
from avatar import imaging as function_imaging
from avatar import inputs as function_inputs
from avatar.backends.local.store import LocalFileStore as FunctionStore
from avatar.backends.local.store import sign as function_sign
from avatar.pipeline import result_name

KEY = "contract-media-signing-key-" + "k" * 32
# The function answers these only to callers the API never is (a GET; its own crash).
NOT_FOR_THE_API = {"method_not_allowed", "internal_error"}
# The function answers these to the API, which handles them itself instead of passing them on:
# a result's name already taken by other bytes (the store is create-only).
HANDLED_BY_THE_API = {"conflict"}


def function_error_classes() -> list[type[function_errors.AvatarError]]:
    found, pending = [function_errors.AvatarError], [function_errors.AvatarError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


# --- the catalogue ----------------------------------------------------------------------------


def test_both_sides_offer_the_same_animals_in_the_same_order() -> None:
    api_side = [(a.id, a.name, a.description) for a in api_animals.ANIMALS]
    function_side = [(a.id, a.name, a.description) for a in function_catalogue.ANIMALS]
    assert api_side == function_side


@pytest.mark.parametrize("given", ["fox", " Fox ", "FOX", "unicorn", "", "fox\x00"])
def test_both_sides_read_an_animal_field_alike(given: str) -> None:
    function_side = function_catalogue.get_animal(given)
    assert api_animals.animal_id(given) == (function_side.id if function_side else None)


def test_both_sides_offer_the_same_styles_and_the_same_default() -> None:
    assert api_animals.STYLES == function_catalogue.RENDER_STYLES
    assert api_animals.DEFAULT_STYLE == function_catalogue.DEFAULT_STYLE


@pytest.mark.parametrize(
    "given",
    ["paint", " Paint ", "CHARACTER", "", "watercolour", " ", "paint,character", "paint\x00"],
)
def test_both_sides_read_a_style_field_alike(given: str) -> None:
    try:
        function_side: str | None = function_inputs.parse_style(given)
    except function_errors.InvalidRequest:
        function_side = None
    try:
        api_side: str | None = api_uploads.parse_style(given)
    except api_errors.InvalidRequest:
        api_side = None
    assert api_side == function_side


# --- error codes and statuses -------------------------------------------------------------------


def test_every_code_the_function_answers_is_one_the_api_passes_on_or_handles() -> None:
    function_codes = {cls.code for cls in function_error_classes()} - NOT_FOR_THE_API
    assert function_codes >= HANDLED_BY_THE_API  # each is still answered by the function
    assert function_codes - HANDLED_BY_THE_API == api_errors.FUNCTION_CODES


@pytest.mark.parametrize("cls", function_error_classes(), ids=lambda cls: cls.__name__)
def test_a_function_code_keeps_its_status_through_the_api(
    cls: type[function_errors.AvatarError],
) -> None:
    if cls.code in NOT_FOR_THE_API:
        return
    api_class = api_errors.ApiError.registry[cls.code]
    # invalid_request is 400 or 422 by SPEC (malformed body / invalid fields): either side's.
    allowed = {400, 422} if cls.code == "invalid_request" else {api_class.status}
    assert cls.status in allowed


# --- the caller's deadline ----------------------------------------------------------------------


def test_both_sides_name_the_deadline_header_alike() -> None:
    assert function_inputs.DEADLINE_HEADER == api_forwarding.DEADLINE_HEADER


# --- object names -------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["jpg", "png"])
def test_the_functions_object_names_fall_under_the_apis_prefixes(extension: str) -> None:
    user_id, generation_id = uuid.uuid4(), uuid.uuid4()
    name = result_name(str(user_id), str(generation_id), extension)
    assert name.startswith(generation_prefix(user_id, generation_id))
    assert name.startswith(user_prefix(user_id))
    assert check_object_name(name) == name
    other = result_name(str(user_id), str(uuid.uuid4()), extension)
    assert not other.startswith(generation_prefix(user_id, generation_id))


NAMES = [
    "avatars/u1/g1.png",
    "uploads/a/b.jpg",
    "a",
    "",
    "/avatars/u1/g1.png",
    "avatars//g1.png",
    "avatars/./g1.png",
    "avatars/../g1.png",
    "..",
    ".",
    "avatars/u1/",
    "avatars\\u1\\g1.png",
    "avatars/u1/g1.png\x00.txt",
    "avatars/..hidden/g.png",
    "avatars/u1/g1..png",
]


@pytest.mark.parametrize("name", NAMES)
def test_both_stores_refuse_the_same_object_names(name: str, tmp_path: Path) -> None:
    from api.errors import NotFound
    from avatar.errors import InvalidRequest

    api_store = ApiStore(tmp_path, public_base_url="http://api.test", signing_key=KEY)
    function_store = FunctionStore(tmp_path, "http://api.test/media", KEY.encode())
    try:
        api_store.path(name)
        api_accepts = True
    except NotFound:
        api_accepts = False
    try:
        function_store.path(name)
        function_accepts = True
    except InvalidRequest:
        function_accepts = False
    assert api_accepts == function_accepts, name


# --- media links --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["avatars/u1/g1.png", "avatars/ü ñ/ø.jpg"])
def test_both_sides_sign_a_media_link_alike(name: str) -> None:
    expires = int(time.time()) + 60
    assert function_sign(KEY.encode(), name, expires) == media_signature(KEY, name, expires)


async def test_a_link_the_function_signs_is_one_the_api_verifies_and_signs_alike(
    tmp_path: Path,
) -> None:
    now = time.time()
    function_store = FunctionStore(tmp_path, "http://api.test/media", KEY.encode(), lambda: now)
    api_store = ApiStore(tmp_path, public_base_url="http://api.test", signing_key=KEY)
    name = "avatars/u1/g 1.png"
    function_url = function_store.signed_url(name, 300)

    parts = urlsplit(function_url)
    query = parse_qs(parts.query)
    served_name = unquote(parts.path.removeprefix("/media/"))
    expires, signature = int(query["expires"][0]), query["signature"][0]
    assert served_name == name
    assert media_signature_valid(KEY, served_name, expires, signature, now=now)
    assert not media_signature_valid(KEY + "x", served_name, expires, signature, now=now)
    api_url = await api_store.signed_url(name, 300)
    assert urlsplit(api_url).path == parts.path  # the same link, whichever side signed it


# --- magic bytes --------------------------------------------------------------------------------


HEADS = [
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\r",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"RIFF\x00\x00\x00\x00WAVE",
    b"\x00\x00\x00\x18ftypheic",
    b"\x00\x00\x00\x18ftypmif1",
    b"\x00\x00\x00\x18ftypisom",
    b"GIF89a\x00\x00\x00\x00\x00\x00",
    b"%PDF-1.7\n\x00\x00\x00",
    b"",
]


@pytest.mark.parametrize("head", HEADS)
def test_both_sides_accept_the_same_image_types(head: bytes) -> None:
    try:
        function_kind: str | None = function_imaging.sniff(head)
    except function_errors.UnsupportedImage:
        function_kind = None
    assert api_sniff(head) == function_kind
