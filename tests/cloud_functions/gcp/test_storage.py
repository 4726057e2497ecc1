"""GcsStore with the real google-cloud-storage client against gcp-storage-emulator, a recording
proxy in front of it, and a fake IAM signBlob + metadata server for key-less signing."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.oauth2 import service_account

from avatar.backends.gcp.retry import Backoff
from avatar.backends.gcp.storage import CACHE_CONTROL, GcsStore
from avatar.errors import InvalidRequest, UpstreamUnavailable
from tests.cloud_functions.gcp.fakes import (
    BUCKET,
    SIGNER_EMAIL,
    FakeServer,
    Recorded,
    Reply,
    google_error,
    iam_and_metadata,
    proxy_to,
)

JPEG = b"\xff\xd8\xff\xe0" + b"result" * 100


@pytest.fixture
def key_credentials(service_account_info: dict[str, Any]) -> service_account.Credentials:
    return service_account.Credentials.from_service_account_info(service_account_info)


@pytest.fixture
def store(emulator: str, key_credentials: service_account.Credentials) -> GcsStore:
    return GcsStore(BUCKET, project="test-project", signing_credentials=key_credentials)


def object_metadata(emulator: str, name: str) -> dict[str, Any]:
    url = f"{emulator}/storage/v1/b/{BUCKET}/o/{requests.utils.quote(name, safe='')}"
    return requests.get(url, timeout=5).json()


def test_put_writes_the_object_with_content_type_and_cache_control(
    store: GcsStore, emulator: str
) -> None:
    store.put("avatars/u1/g1.jpg", JPEG, "image/jpeg")
    meta = object_metadata(emulator, "avatars/u1/g1.jpg")
    assert meta["contentType"] == "image/jpeg"
    assert meta["cacheControl"] == CACHE_CONTROL
    assert store.read("avatars/u1/g1.jpg") == JPEG


@pytest.fixture
def proxied(emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """A recording proxy in front of the emulator, with the client pointed at the proxy."""
    server = FakeServer(proxy_to(emulator)).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    yield server
    server.stop()


def uploads(server: FakeServer) -> list[Recorded]:
    return [r for r in server.requests if r.path.startswith("/upload/storage/v1/")]


def test_upload_sends_the_generation_precondition(
    proxied: FakeServer, key_credentials: service_account.Credentials
) -> None:
    GcsStore(BUCKET, signing_credentials=key_credentials).put(
        "avatars/u1/g2.png", b"\x89PNG", "image/png"
    )
    [upload] = uploads(proxied)
    assert upload.method == "POST"
    assert upload.query["ifGenerationMatch"] == ["0"]
    assert upload.query["uploadType"] == ["multipart"]
    assert b'"name": "avatars/u1/g2.png"' in upload.body
    assert b"content-type: image/png\r\n\r\n\x89PNG" in upload.body


def test_a_412_means_already_written_and_succeeds(
    emulator: str, key_credentials: service_account.Credentials
) -> None:
    def refuse_uploads(request: Recorded) -> Reply | None:
        if request.path.startswith("/upload/"):
            return Reply(google_error(412, "FAILED_PRECONDITION", "conditionNotMet"), 412)
        return None

    with pytest.MonkeyPatch.context() as patch:
        server = FakeServer(proxy_to(emulator, refuse_uploads)).start()
        patch.setenv("STORAGE_EMULATOR_HOST", server.url)
        try:
            GcsStore(BUCKET, signing_credentials=key_credentials).put(
                "avatars/x.jpg", JPEG, "image/jpeg"
            )
        finally:
            server.stop()
    assert len(uploads(server)) == 1


def test_a_503_upload_is_retried(
    emulator: str, key_credentials: service_account.Credentials, fast_backoff: Backoff
) -> None:
    failures = iter([Reply(google_error(503, "UNAVAILABLE"), 503)])

    def fail_once(request: Recorded) -> Reply | None:
        return next(failures, None) if request.path.startswith("/upload/") else None

    with pytest.MonkeyPatch.context() as patch:
        server = FakeServer(proxy_to(emulator, fail_once)).start()
        patch.setenv("STORAGE_EMULATOR_HOST", server.url)
        try:
            store = GcsStore(BUCKET, signing_credentials=key_credentials, backoff=fast_backoff)
            store.put("avatars/retried.jpg", JPEG, "image/jpeg")
            assert store.read("avatars/retried.jpg") == JPEG
        finally:
            server.stop()
    assert len(uploads(server)) == 2


def test_get_refuses_other_buckets_and_reports_missing_objects(store: GcsStore) -> None:
    with pytest.raises(InvalidRequest):
        store.get("gs://someone-elses-bucket/uploads/secret.jpg")
    with pytest.raises(InvalidRequest):
        store.get("https://example.com/x.jpg")
    with pytest.raises(InvalidRequest, match="no readable object"):
        store.get(f"gs://{BUCKET}/uploads/missing.jpg")


@pytest.mark.parametrize(
    "name", ["avatars/u1/g1.jpg", "uploads/../avatars/u1/g1.jpg", "uploads/", "uploads//x.jpg"]
)
def test_get_reads_nothing_but_uploads(store: GcsStore, name: str) -> None:
    store.put("avatars/u1/g1.jpg", JPEG, "image/jpeg")  # another user's result

    with pytest.raises(InvalidRequest, match="uploads/"):
        store.get(f"gs://{BUCKET}/{name}")


def test_get_reads_an_upload(store: GcsStore) -> None:
    store.put("uploads/u1/in.jpg", JPEG, "image/jpeg")

    assert store.get(f"gs://{BUCKET}/uploads/u1/in.jpg") == JPEG


def verify_v4(url: str, key: rsa.RSAPrivateKey, email: str) -> dict[str, list[str]]:
    """Check a V4 signed URL's signature against the public half of `key`; its query."""
    split = urlsplit(url)
    query = parse_qs(split.query)
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Credential"][0].startswith(f"{email}/")
    canonical_query = split.query.split("&X-Goog-Signature=")[0]
    canonical = "\n".join(
        ["GET", split.path, canonical_query, f"host:{split.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    import hashlib

    scope = query["X-Goog-Credential"][0].split("/", 1)[1]
    to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", query["X-Goog-Date"][0], scope,
         hashlib.sha256(canonical.encode()).hexdigest()]
    )  # fmt: skip
    signature = binascii.unhexlify(query["X-Goog-Signature"][0])
    key.public_key().verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    return query


def test_signed_url_with_a_private_key_fetches_the_object(
    store: GcsStore, emulator: str, rsa_key: rsa.RSAPrivateKey
) -> None:
    store.put("avatars/u1/signed.jpg", JPEG, "image/jpeg")
    url = store.signed_url("avatars/u1/signed.jpg", ttl_s=600)

    assert url.startswith(f"{emulator}/{BUCKET}/avatars/u1/signed.jpg?")
    query = verify_v4(url, rsa_key, SIGNER_EMAIL)
    assert query["X-Goog-Expires"] == ["600"]
    fetched = requests.get(url, timeout=5)
    assert (fetched.status_code, fetched.content) == (200, JPEG)


@pytest.fixture
def metadata_server(
    rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeServer]:
    """Fake IAM signBlob and GCE metadata server, as Cloud Functions would see them."""
    import google.auth.compute_engine._metadata as metadata

    server = FakeServer(iam_and_metadata(rsa_key, SIGNER_EMAIL)).start()
    # google-auth reads GCE_METADATA_HOST once, at import: point its copy at the fake.
    monkeypatch.setattr(metadata, "_GCE_METADATA_HOST", server.url.removeprefix("http://"))
    yield server
    server.stop()


def test_signed_url_without_a_key_goes_through_iam_sign_blob(
    emulator: str, metadata_server: FakeServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    from google.auth import compute_engine

    # Token-only credentials, as google.auth.default() returns on Cloud Functions.
    store = GcsStore(
        BUCKET, signing_credentials=compute_engine.Credentials(), iam_endpoint=metadata_server.url
    )
    store.put("avatars/u1/iam.jpg", JPEG, "image/jpeg")
    url = store.signed_url("avatars/u1/iam.jpg", ttl_s=300)

    verify_v4(url, rsa_key, SIGNER_EMAIL)
    [sign] = [r for r in metadata_server.requests if r.path.endswith(":signBlob")]
    assert sign.path == f"/v1/projects/-/serviceAccounts/{SIGNER_EMAIL}:signBlob"
    assert sign.headers["authorization"] == "Bearer ya29.fake-token"
    assert base64.b64decode(sign.json()["payload"]).startswith(b"GOOG4-RSA-SHA256\n")
    assert requests.get(url, timeout=5).content == JPEG


def test_a_failing_sign_blob_is_upstream_unavailable(
    emulator: str, metadata_server: FakeServer
) -> None:
    from google.oauth2.credentials import Credentials

    class TokenOnly(Credentials):  # a valid token IAM refuses to sign for
        service_account_email = SIGNER_EMAIL

    store = GcsStore(
        BUCKET, signing_credentials=TokenOnly("wrong-token"), iam_endpoint=metadata_server.url
    )
    with pytest.raises(UpstreamUnavailable, match="HTTP 403"):
        store.signed_url("avatars/u1/iam.jpg", ttl_s=300)


def test_delete_and_delete_prefix(store: GcsStore) -> None:
    for name in ("users/u9/a.jpg", "users/u9/b.png", "users/u10/c.jpg"):
        store.put(name, JPEG, "image/jpeg")
    store.delete("users/u9/a.jpg")
    store.delete("users/u9/a.jpg")  # already gone: fine
    assert store.delete_prefix("users/u9/") == 1
    assert store.read("users/u9/b.png") is None
    assert store.read("users/u10/c.jpg") == JPEG
    with pytest.raises(ValueError, match="empty prefix"):
        store.delete_prefix("")


def test_sign_blob_unavailable_is_retried(
    emulator: str, metadata_server: FakeServer, rsa_key: rsa.RSAPrivateKey, fast_backoff: Backoff
) -> None:
    from google.auth import compute_engine

    answer = iam_and_metadata(rsa_key, SIGNER_EMAIL)
    failures = iter([Reply(google_error(503, "UNAVAILABLE"), 503)])

    def flaky(request: Recorded) -> Reply:
        if request.path.endswith(":signBlob"):
            return next(failures, None) or answer(request)
        return answer(request)

    iam = FakeServer(flaky).start()
    try:
        store = GcsStore(
            BUCKET, signing_credentials=compute_engine.Credentials(), iam_endpoint=iam.url,
            backoff=fast_backoff,
        )  # fmt: skip
        url = store.signed_url("avatars/u1/flaky.jpg", ttl_s=60)
    finally:
        iam.stop()
    verify_v4(url, rsa_key, SIGNER_EMAIL)
    assert len([r for r in iam.requests if r.path.endswith(":signBlob")]) == 2
