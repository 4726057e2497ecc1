"""GcsStore with the real google-cloud-storage client against gcp-storage-emulator, a recording
proxy in front of it, and a fake IAM signBlob + metadata server for key-less signing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.oauth2 import service_account

from avatar.backends.gcp.retry import MIN_ATTEMPT_S, Backoff
from avatar.backends.gcp.storage import (
    CACHE_CONTROL,
    DEADLINE_GRACE_S,
    GcsStore,
    md5_base64,
    upload_budget_s,
)
from avatar.errors import Conflict, InvalidRequest, UpstreamTimeout, UpstreamUnavailable
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
OTHER_JPEG = b"\xff\xd8\xff\xe0" + b"another" * 100


@pytest.fixture
def key_credentials(service_account_info: dict[str, Any]) -> service_account.Credentials:
    return service_account.Credentials.from_service_account_info(service_account_info)


@pytest.fixture
def store(emulator: str, key_credentials: service_account.Credentials) -> GcsStore:
    return GcsStore(BUCKET, project="test-project", signing_credentials=key_credentials)


def object_url(emulator: str, name: str) -> str:
    return f"{emulator}/storage/v1/b/{BUCKET}/o/{requests.utils.quote(name, safe='')}"


def object_metadata(emulator: str, name: str) -> dict[str, Any]:
    return requests.get(object_url(emulator, name), timeout=5).json()


def object_exists(emulator: str, name: str) -> bool:
    return requests.get(object_url(emulator, name), timeout=5).status_code == 200


def test_put_writes_the_object_with_content_type_and_cache_control(
    store: GcsStore, emulator: str
) -> None:
    store.put("avatars/u1/g1.jpg", JPEG, "image/jpeg")
    meta = object_metadata(emulator, "avatars/u1/g1.jpg")
    assert meta["contentType"] == "image/jpeg"
    assert meta["cacheControl"] == CACHE_CONTROL
    assert store.read("avatars/u1/g1.jpg") == JPEG


@contextmanager
def fronted(
    emulator: str, override: Callable[[Recorded], Reply | None] | None = None
) -> Iterator[FakeServer]:
    """A recording proxy in front of the emulator (answering what `override` answers), with the
    client pointed at the proxy while the block runs."""
    server = FakeServer(proxy_to(emulator, override)).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", server.url)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def proxied(emulator: str) -> Iterator[FakeServer]:
    """A recording proxy in front of the emulator, with the client pointed at the proxy."""
    with fronted(emulator) as server:
        yield server


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


def uploaded_name(request: Recorded) -> str | None:
    """The object a multipart upload creates, from its JSON metadata part."""
    found = re.search(rb'"name": "([^"]+)"', request.body)
    return found.group(1).decode() if found else None


def create_only(emulator: str) -> Callable[[Recorded], Reply | None]:
    """What Cloud Storage does and the emulator does not: refuse an `ifGenerationMatch=0`
    upload with 412 when the object exists (the other requests go through)."""

    def refuse_existing(request: Recorded) -> Reply | None:
        name = uploaded_name(request)
        if request.query.get("ifGenerationMatch") != ["0"] or name is None:
            return None
        if not object_exists(emulator, name):
            return None
        return Reply(google_error(412, "FAILED_PRECONDITION", "conditionNotMet"), 412)

    return refuse_existing


@pytest.fixture
def gcs_like(emulator: str) -> Iterator[FakeServer]:
    """The emulator behind a proxy that enforces `ifGenerationMatch=0` as Cloud Storage does."""
    with fronted(emulator, create_only(emulator)) as server:
        yield server


def test_the_md5_is_the_one_cloud_storage_records(store: GcsStore, emulator: str) -> None:
    store.put("avatars/u1/md5.jpg", JPEG, "image/jpeg")
    assert object_metadata(emulator, "avatars/u1/md5.jpg")["md5Hash"] == md5_base64(JPEG)
    assert md5_base64(JPEG) == base64.b64encode(hashlib.md5(JPEG).digest()).decode()


def test_a_412_over_the_same_bytes_is_a_retry_and_succeeds(
    gcs_like: FakeServer, key_credentials: service_account.Credentials
) -> None:
    store = GcsStore(BUCKET, signing_credentials=key_credentials)
    store.put("avatars/u1/again.jpg", JPEG, "image/jpeg")

    store.put("avatars/u1/again.jpg", JPEG, "image/jpeg")

    assert len(uploads(gcs_like)) == 2
    assert store.read("avatars/u1/again.jpg") == JPEG


def test_a_412_over_other_bytes_is_a_conflict_and_keeps_them(
    gcs_like: FakeServer, key_credentials: service_account.Credentials
) -> None:
    store = GcsStore(BUCKET, signing_credentials=key_credentials)
    store.put("avatars/u1/theirs.jpg", JPEG, "image/jpeg")

    with pytest.raises(Conflict) as raised:
        store.put("avatars/u1/theirs.jpg", OTHER_JPEG, "image/jpeg")

    assert (raised.value.code, raised.value.status) == ("conflict", 409)
    assert raised.value.detail == (
        "an object named 'avatars/u1/theirs.jpg' already exists; a result is never replaced"
    )
    assert len(uploads(gcs_like)) == 2  # a conflict is not retried
    assert store.read("avatars/u1/theirs.jpg") == JPEG


def test_an_upload_that_landed_but_failed_is_retried_into_a_success(
    emulator: str, key_credentials: service_account.Credentials, fast_backoff: Backoff
) -> None:
    enforce = create_only(emulator)
    landed_once = iter([True])

    def land_then_fail(request: Recorded) -> Reply | None:
        refused = enforce(request)
        if refused is not None or not request.path.startswith("/upload/"):
            return refused
        if next(landed_once, False):  # the object is written, but the answer is lost
            proxy_to(emulator)(request)
            return Reply(google_error(503, "UNAVAILABLE"), 503)
        return None

    with fronted(emulator, land_then_fail) as server:
        store = GcsStore(BUCKET, signing_credentials=key_credentials, backoff=fast_backoff)
        store.put("avatars/u1/landed.jpg", JPEG, "image/jpeg")
    assert len(uploads(server)) == 2  # the second met the first's object: 412, same bytes
    assert store.read("avatars/u1/landed.jpg") == JPEG


def test_a_412_for_an_object_gone_again_is_a_conflict(
    emulator: str, key_credentials: service_account.Credentials
) -> None:
    def refuse_uploads(request: Recorded) -> Reply | None:
        if request.path.startswith("/upload/"):
            return Reply(google_error(412, "FAILED_PRECONDITION", "conditionNotMet"), 412)
        return None

    with fronted(emulator, refuse_uploads) as server, pytest.raises(Conflict):
        # not known to hold these bytes: not taken as ours
        GcsStore(BUCKET, signing_credentials=key_credentials).put(
            "avatars/x.jpg", JPEG, "image/jpeg"
        )
    assert len(uploads(server)) == 1


@pytest.mark.parametrize(
    ("deadline", "budget_s"),
    [
        (None, 5.0),  # no deadline: the store's own share
        (1_000.0 + 60, 5.0),  # far away: the share
        (1_000.0 + 2, 2 + DEADLINE_GRACE_S),  # near: what is left, plus the grace
        (1_000.0 - 60, MIN_ATTEMPT_S),  # past: one minimal attempt (the pipeline checked)
    ],
)
def test_the_upload_budget_is_cut_to_the_callers_deadline(
    deadline: float | None, budget_s: float
) -> None:
    assert upload_budget_s(5.0, deadline, now=1_000.0) == pytest.approx(budget_s)


def test_an_upload_is_cut_at_the_callers_deadline_plus_the_grace(
    emulator: str, key_credentials: service_account.Credentials
) -> None:
    def hang_uploads(request: Recorded) -> Reply | None:
        return Reply({}, delay_s=30) if request.path.startswith("/upload/") else None

    store = GcsStore(BUCKET, signing_credentials=key_credentials, deadline_s=25.0)
    with fronted(emulator, hang_uploads):
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            store.put("avatars/u1/late.jpg", JPEG, "image/jpeg", deadline=time.time() + 0.2)
    assert time.monotonic() - started < 0.2 + DEADLINE_GRACE_S + 1.0  # not the 25 s share


def test_a_503_upload_is_retried(
    emulator: str, key_credentials: service_account.Credentials, fast_backoff: Backoff
) -> None:
    failures = iter([Reply(google_error(503, "UNAVAILABLE"), 503)])

    def fail_once(request: Recorded) -> Reply | None:
        return next(failures, None) if request.path.startswith("/upload/") else None

    with fronted(emulator, fail_once) as server:
        store = GcsStore(BUCKET, signing_credentials=key_credentials, backoff=fast_backoff)
        store.put("avatars/retried.jpg", JPEG, "image/jpeg")
        assert store.read("avatars/retried.jpg") == JPEG
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
