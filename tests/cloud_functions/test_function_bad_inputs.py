"""A corpus of bad inputs: each gets its documented 4xx with a JSON error, never a 500."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from function_testing import Post, encode, jpeg_claiming, png_claiming


def assert_error(response: object, status: int, code: str) -> None:
    assert response.status_code == status, response.get_json()  # type: ignore[attr-defined]
    body = response.get_json()  # type: ignore[attr-defined]
    assert body["error"] == code
    assert body["detail"]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("zero_bytes", 415, "unsupported_image"),
        ("text_renamed_jpg", 415, "unsupported_image"),
        ("gif", 415, "unsupported_image"),
        ("truncated_jpeg", 422, "invalid_image"),
        ("jpeg_magic_then_garbage", 422, "invalid_image"),
        ("png_header_then_jpeg_body", 422, "invalid_image"),
        ("png_claims_50000x50000", 413, "image_too_large"),
        ("jpeg_claims_60000x60000", 413, "image_too_large"),
    ],
)
def test_bad_image_files(
    name: str, status: int, code: str, post_multipart: Post, astronaut_jpeg: bytes
) -> None:
    from function_testing import load_photo

    files = {
        "zero_bytes": b"",
        "text_renamed_jpg": b"Dear diary, today I renamed a text file to .jpg\n" * 20,
        "gif": encode(load_photo("coffee"), "GIF"),
        "truncated_jpeg": astronaut_jpeg[: len(astronaut_jpeg) // 2],
        "jpeg_magic_then_garbage": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40,
        "png_header_then_jpeg_body": b"\x89PNG\r\n\x1a\n" + astronaut_jpeg,
        "png_claims_50000x50000": png_claiming(50_000, 50_000),
        "jpeg_claims_60000x60000": jpeg_claiming(astronaut_jpeg, 60_000, 60_000),
    }
    assert_error(post_multipart(files[name], filename=f"{name}.jpg"), status, code)


def test_same_corpus_as_raw_body(client: FlaskClient, astronaut_jpeg: bytes) -> None:
    truncated = astronaut_jpeg[: len(astronaut_jpeg) // 2]
    response = client.post("/?animal=cat", data=truncated, content_type="image/jpeg")
    assert_error(response, 422, "invalid_image")
    empty = client.post("/?animal=cat", data=b"", content_type="image/png")
    assert_error(empty, 415, "unsupported_image")


def test_body_over_the_limit_is_413_before_reading(client: FlaskClient) -> None:
    body = b"\xff\xd8\xff" + b"\x00" * (40 * 1024 * 1024)
    assert_error(client.post("/", data=body, content_type="image/jpeg"), 413, "image_too_large")


def test_multipart_over_the_limit_is_413(client: FlaskClient) -> None:
    form = {"image": (io.BytesIO(b"\xff\xd8\xff" + b"\x00" * (40 * 1024 * 1024)), "big.jpg")}
    response = client.post("/", data=form, content_type="multipart/form-data")
    assert_error(response, 413, "image_too_large")


def test_huge_form_field_is_413_json(client: FlaskClient, astronaut_jpeg: bytes) -> None:
    form = {"image": (io.BytesIO(astronaut_jpeg), "a.jpg"), "animal": "x" * 600_000}
    response = client.post("/", data=form, content_type="multipart/form-data")
    assert_error(response, 413, "image_too_large")


def test_streamed_body_over_the_limit_is_413(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_REQUEST_BYTES", "1000")
    from avatar.config import get_settings

    get_settings.cache_clear()
    response = client.post(
        "/",
        input_stream=io.BytesIO(b"\xff\xd8\xff" + b"\x00" * 5000),
        content_type="image/jpeg",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # a server that de-chunks, like gunicorn
    )
    assert_error(response, 413, "image_too_large")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"]
)
def test_wrong_content_type_is_415(
    client: FlaskClient, astronaut_jpeg: bytes, content_type: str
) -> None:
    response = client.post("/", data=astronaut_jpeg, content_type=content_type)
    assert_error(response, 415, "unsupported_image")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-da"),
        ("multipart/form-data", b"no boundary at all"),
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\n\r\n\r\n--XyZ--\r\n"),
    ],
)
def test_malformed_multipart_is_400(client: FlaskClient, content_type: str, body: bytes) -> None:
    assert_error(client.post("/", data=body, content_type=content_type), 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        b'{"image_base64": "not base64 at all!!", "animal": "cat"}',
        b'{"image_base64": "QUJ", "animal": "cat"}',
        b'{"image_base64": 12345}',
        b'{"animal": "cat"}',
        b'{"image_base64": "QUJD", "gcs_uri": "gs://b/o"}',
        b'{"gcs_uri": ""}',
        b"[1, 2, 3]",
        b'{"image_base64": ',
        b"",
    ],
)
def test_malformed_json_is_400(client: FlaskClient, body: bytes) -> None:
    response = client.post("/", data=body, content_type="application/json")
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 5_000 + b"]" * 5_000])
def test_deeply_nested_json_is_400_not_a_crash(client: FlaskClient, body: bytes) -> None:
    response = client.post("/", data=body, content_type="application/json")
    assert_error(response, 400, "invalid_request")


def test_base64_of_text_is_415(client: FlaskClient) -> None:
    encoded = base64.b64encode(b"just some words").decode()
    response = client.post("/", json={"image_base64": encoded, "animal": "cat"})
    assert_error(response, 415, "unsupported_image")


def test_unknown_animal_is_400(post_multipart: Post, astronaut_jpeg: bytes) -> None:
    response = post_multipart(astronaut_jpeg, animal="unicorn")
    assert_error(response, 400, "invalid_request")
    assert "fox" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/?animal=cat", "multipart", "multipart/form-data"),
        ("/?animal=cat&style=watercolour", "raw", "image/jpeg"),
        ("/", "json", "application/json"),
        ("/", "json_number", "application/json"),
        ("/", "json_list", "application/json"),
    ],
)
def test_unknown_style_is_400_naming_the_choices(
    client: FlaskClient, astronaut_jpeg: bytes, path: str, body: str, content_type: str
) -> None:
    encoded = base64.b64encode(astronaut_jpeg).decode()
    data: object = {
        "multipart": {"image": (io.BytesIO(astronaut_jpeg), "selfie.jpg"), "style": "cartoon"},
        "raw": astronaut_jpeg,
        "json": json.dumps({"image_base64": encoded, "animal": "cat", "style": "paint-by-numbers"}),
        "json_number": json.dumps({"image_base64": encoded, "animal": "cat", "style": 1}),
        "json_list": json.dumps({"image_base64": encoded, "animals": ["cat"], "style": ["paint"]}),
    }[body]
    response = client.post(path, data=data, content_type=content_type)
    assert_error(response, 400, "invalid_request")
    assert "`character` or `paint`" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/", "image", "multipart/form-data"),
        ("/", "raw", "image/jpeg"),
        ("/?animal=", "raw", "image/jpeg"),
        ("/", "json", "application/json"),
    ],
)
def test_missing_animal_is_400(
    client: FlaskClient, astronaut_jpeg: bytes, path: str, body: str, content_type: str
) -> None:
    data: object = {
        "image": {"image": (io.BytesIO(astronaut_jpeg), "selfie.jpg")},
        "raw": astronaut_jpeg,
        "json": json.dumps({"image_base64": base64.b64encode(astronaut_jpeg).decode()}),
    }[body]
    response = client.post(path, data=data, content_type=content_type)
    assert_error(response, 400, "invalid_request")
    assert response.get_json()["detail"].startswith("animal is required (one of ")
    assert "panda" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", "../../etc"),
        ("user_id", "a" * 65),
        ("generation_id", "x/y"),
        ("generation_id", "gen id"),
        ("faces", "some"),
    ],
)
def test_unsafe_fields_are_400(
    post_multipart: Post, astronaut_jpeg: bytes, field: str, value: str
) -> None:
    assert_error(post_multipart(astronaut_jpeg, **{field: value}), 400, "invalid_request")


@pytest.mark.parametrize(
    "uri",
    [
        "gs://bucket/../../../etc/passwd",
        "/etc/passwd",
        "gs://bucket/",
        "gs://bucket/missing.jpg",
        "uploads/missing.jpg",
        "uploads/../avatars/victim/g1.jpg",
        "avatars/victim/g1.jpg",  # someone else's result: not an upload
        "gs://other-bucket/uploads/in.jpg",
    ],
)
def test_bad_gcs_uri_is_400(
    client: FlaskClient, storage_dir: Path, monkeypatch: pytest.MonkeyPatch, uri: str
) -> None:
    monkeypatch.setenv("GCS_BUCKET", "bucket")
    (storage_dir / "avatars" / "victim").mkdir(parents=True, exist_ok=True)
    (storage_dir / "avatars" / "victim" / "g1.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 99)
    (storage_dir / "uploads").mkdir(exist_ok=True)
    (storage_dir / "uploads" / "in.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 99)
    assert_error(client.post("/", json={"gcs_uri": uri, "animal": "cat"}), 400, "invalid_request")


def test_stored_input_over_the_size_limit_is_413(
    client: FlaskClient, storage_dir: Path, monkeypatch: pytest.MonkeyPatch, astronaut_jpeg: bytes
) -> None:
    (storage_dir / "uploads").mkdir(exist_ok=True)
    (storage_dir / "uploads" / "big.jpg").write_bytes(astronaut_jpeg)
    monkeypatch.setenv("MAX_REQUEST_BYTES", "5000")
    from avatar.config import get_settings

    get_settings.cache_clear()
    response = client.post("/", json={"gcs_uri": "uploads/big.jpg", "animal": "cat"})
    assert_error(response, 413, "image_too_large")


def test_missing_image_part_is_400(client: FlaskClient) -> None:
    response = client.post("/", data={"animal": "cat"}, content_type="multipart/form-data")
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_405(client: FlaskClient, method: str) -> None:
    response = client.open("/", method=method)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


def test_nothing_half_written_after_errors(
    client: FlaskClient, storage_dir: Path, astronaut_jpeg: bytes
) -> None:
    before = set(storage_dir.rglob("*"))
    client.post("/", data=astronaut_jpeg[:5000], content_type="image/jpeg")
    client.post("/", data=b"", content_type="image/jpeg")
    assert {p for p in storage_dir.rglob("*") if p not in before} == set()
