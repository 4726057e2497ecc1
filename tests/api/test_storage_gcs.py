"""The API's GCS store (STORAGE_BACKEND=gcs) against gcp-storage-emulator in this process.

Links are signed with a key made for the test (a service-account file as Application Default
Credentials), or, for token-only credentials, through a fake IAM signBlob endpoint that
google-auth's own transport reaches: the store's `auth_request` routes Google's hosts to it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import compute_engine
from google.auth.transport import requests as auth_requests
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import credentials as oauth2_credentials

from api.config import REPO_ROOT, Settings
from api.errors import NotFound, UpstreamUnavailable
from api.storage import build_store
from api.storage.gcs import GcsStore
from tests.cloud_functions.gcp.fakes import (
    BUCKET,
    SIGNER_EMAIL,
    FakeServer,
    Recorded,
    Reply,
    google_error,
    iam_and_metadata,
)
from tests.storage_emulator import storage_emulator

PNG = b"\x89PNG\r\n\x1a\n" + b"avatar" * 50
TOKEN = "ya29.test-token"
SIGN_BLOB_PATH = f"/v1/projects/-/serviceAccounts/{SIGNER_EMAIL}:signBlob"
# Where google-auth sends signBlob and metadata-server requests; the tests answer them locally.
GOOGLE_HOSTS = frozenset({"iamcredentials.googleapis.com", "metadata.google.internal"})
UNREACHABLE = "http://127.0.0.1:9"

Put = Callable[[str, bytes, str], None]


class RoutedRequest(auth_requests.Request):
    """google-auth's requests transport, with Google's IAM and metadata hosts sent to a fake."""

    def __init__(self, fake_url: str) -> None:
        super().__init__()
        self._fake = urlsplit(fake_url)

    def __call__(self, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        if parts.hostname in GOOGLE_HOSTS:
            url = urlunsplit(parts._replace(scheme=self._fake.scheme, netloc=self._fake.netloc))
        return super().__call__(url, *args, **kwargs)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with storage_emulator(BUCKET) as url:
        yield url


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """The service account's key, made for this test run (never committed)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def adc_key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    """A service-account file holding the test key."""
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    info = {"type": "service_account", "project_id": "test-project", "private_key_id": "k1",
            "private_key": pem.decode(), "client_email": SIGNER_EMAIL, "client_id": "1",
            "token_uri": f"{UNREACHABLE}/token"}  # fmt: skip
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def emulated(emulator_url: str, adc_key_file: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point google-cloud-storage at the emulator and ADC at the test key."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc_key_file))
    return emulator_url


@pytest.fixture
def store(emulated: str) -> GcsStore:
    built = build_store(Settings(storage_backend="gcs", gcs_bucket=BUCKET))
    assert isinstance(built, GcsStore)
    return built


@pytest.fixture
def put(emulated: str) -> Put:
    """Write an object the way the function does (the store itself has no put)."""
    bucket = storage.Client().bucket(BUCKET)

    def write(name: str, data: bytes, content_type: str) -> None:
        bucket.blob(name).upload_from_string(data, content_type=content_type)

    return write


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def fetch(url: str) -> requests.Response:
    return await asyncio.to_thread(requests.get, url, timeout=5)


async def test_read_returns_the_objects_bytes(store: GcsStore, put: Put) -> None:
    put("avatars/u1/read.png", PNG, "image/png")
    assert await store.read("avatars/u1/read.png") == PNG


async def test_missing_objects_and_unsafe_names_are_not_found(store: GcsStore) -> None:
    with pytest.raises(NotFound):
        await store.read("avatars/u1/nothing.png")
    for unsafe in ("avatars/../x", "/avatars/u1/a.png", "avatars//a.png", "avatars/u1/"):
        with pytest.raises(NotFound):
            await store.read(unsafe)
        with pytest.raises(NotFound):
            await store.signed_url(unsafe, 60)
        with pytest.raises(NotFound):
            await store.delete(unsafe)


async def test_a_signed_link_fetches_the_object(store: GcsStore, put: Put, emulated: str) -> None:
    put("avatars/u1/linked.png", PNG, "image/png")

    url = await store.signed_url("avatars/u1/linked.png", 900)

    assert url.startswith(f"{emulated}/{BUCKET}/avatars/u1/linked.png?")
    params = query(url)
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert params["X-Goog-Expires"] == "900"
    assert params["X-Goog-Credential"].startswith(f"{SIGNER_EMAIL}/")
    fetched = await fetch(url)
    assert fetched.status_code == 200
    assert fetched.content == PNG
    assert fetched.headers["Content-Type"] == "image/png"


async def test_a_history_page_signs_its_links_at_once(store: GcsStore) -> None:
    names = [f"avatars/u2/g{i}.png" for i in range(50)]
    urls = await asyncio.gather(*(store.signed_url(name, 60) for name in names))
    assert [urlsplit(url).path for url in urls] == [f"/{BUCKET}/{name}" for name in names]
    assert len({query(url)["X-Goog-Signature"] for url in urls}) == 50


async def test_delete_and_delete_prefix_erase_a_users_objects(store: GcsStore, put: Put) -> None:
    for name in ("avatars/u7/a.png", "avatars/u7/b.jpg", "avatars/u70/c.png"):
        put(name, PNG, "image/png")

    await store.delete("avatars/u7/a.png")
    await store.delete("avatars/u7/a.png")  # missing: not an error
    await store.delete_prefix("avatars/u7/")
    await store.delete_prefix("avatars/u7/")  # nothing left: not an error

    for name in ("avatars/u7/a.png", "avatars/u7/b.jpg"):
        with pytest.raises(NotFound):
            await store.read(name)
    assert await store.read("avatars/u70/c.png") == PNG
    with pytest.raises(ValueError, match="empty prefix"):
        await store.delete_prefix("")


@pytest.mark.parametrize(
    "reply",
    [Reply(google_error(503, "UNAVAILABLE"), 503), Reply({}, delay_s=30)],
    ids=["503", "no-answer"],
)
async def test_an_unavailable_bucket_answers_upstream_unavailable_in_bounded_time(
    reply: Reply, adc_key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = FakeServer().start()
    down.script(reply)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", down.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc_key_file))
    store = build_store(Settings(storage_backend="gcs", gcs_bucket=BUCKET, gcs_timeout_s=0.5))
    try:
        for call in (
            lambda: store.read("avatars/u1/g1.png"),
            lambda: store.delete_prefix("avatars/u1/"),
        ):
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable) as caught:
                await call()
            # Retries stop at the 0.5 s deadline; the request in flight has 0.5 s of its own.
            assert time.monotonic() - started < 2.0
            assert caught.value.retry_after_s == 5
    finally:
        down.stop()
    assert any(r.path.startswith("/download/") for r in down.requests)


async def test_a_passing_outage_is_retried(
    adc_key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outages = iter([Reply(google_error(503, "UNAVAILABLE"), 503)] * 2)

    def flaky(request: Recorded) -> Reply:
        if request.path.startswith("/download/"):
            return next(outages, Reply(PNG))
        return Reply(google_error(404, "NOT_FOUND"), 404)  # the library's bucket metadata

    server = FakeServer(flaky).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc_key_file))
    retry = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05).with_timeout(5.0)
    store = GcsStore(BUCKET, timeout_s=5.0, retry=retry)
    try:
        assert await store.read("avatars/u1/g1.png") == PNG
    finally:
        server.stop()
    assert len([r for r in server.requests if r.path.startswith("/download/")]) == 3


async def test_nothing_is_built_before_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", UNREACHABLE)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    store = build_store(Settings(storage_backend="gcs", gcs_bucket=BUCKET, gcs_timeout_s=0.3))

    with pytest.raises(UpstreamUnavailable):  # no credentials to sign with
        await store.signed_url("avatars/u1/g1.png", 60)
    with pytest.raises(UpstreamUnavailable):  # no bucket to read from
        await store.read("avatars/u1/g1.png")


def test_the_settings_name_the_bucket() -> None:
    with pytest.raises(ValueError, match="GCS_BUCKET"):
        build_store(Settings(storage_backend="gcs"))
    assert GcsStore.from_settings(Settings(gcs_bucket=BUCKET)).bucket_name == BUCKET


# --- Token-only credentials: V4 signatures through IAM signBlob ----------------------------------


class Recording:
    """A fake's handler that remembers each request with the reply it was given."""

    def __init__(self, handler: Callable[[Recorded], Reply]) -> None:
        self.handler = handler
        self.exchanges: list[tuple[Recorded, Reply]] = []

    def __call__(self, request: Recorded) -> Reply:
        reply = self.handler(request)
        self.exchanges.append((request, reply))
        return reply

    def sign_blobs(self) -> list[tuple[Recorded, Reply]]:
        return [(q, r) for q, r in self.exchanges if q.path.endswith(":signBlob")]


@pytest.fixture
def iam(rsa_key: rsa.RSAPrivateKey) -> Iterator[tuple[FakeServer, Recording]]:
    """Fake IAM signBlob and metadata server, signing with the service account's key."""
    recording = Recording(iam_and_metadata(rsa_key, SIGNER_EMAIL, token=TOKEN))
    server = FakeServer(recording).start()
    yield server, recording
    server.stop()


def token_only_credentials() -> Any:
    """User-style credentials: a bearer token, no key, no service account of their own."""
    return oauth2_credentials.Credentials(token=TOKEN)  # type: ignore[no-untyped-call]


def metadata_credentials() -> Any:
    """Cloud Run's: "default" until a refresh at the metadata server names the account."""
    # The universe is given, or google-auth asks the real metadata server on its own transport.
    return compute_engine.Credentials(universe_domain="googleapis.com")  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("make_credentials", "signer_email"),
    [(token_only_credentials, SIGNER_EMAIL), (metadata_credentials, None)],
    ids=["token-and-email", "metadata-server"],
)
async def test_token_only_credentials_sign_through_iam_sign_blob(
    make_credentials: Callable[[], Any],
    signer_email: str | None,
    iam: tuple[FakeServer, Recording],
    put: Put,
    emulated: str,
) -> None:
    fake, recording = iam
    put("avatars/u3/iam.png", PNG, "image/png")
    store = GcsStore(
        BUCKET,
        timeout_s=2.0,
        signing_credentials=make_credentials(),
        signer_email=signer_email,
        auth_request=lambda: RoutedRequest(fake.url),
    )

    urls = await asyncio.gather(*(store.signed_url("avatars/u3/iam.png", 600) for _ in range(5)))

    calls = recording.sign_blobs()
    assert len(calls) == 5
    for request, _reply in calls:
        assert (request.method, request.path) == ("POST", SIGN_BLOB_PATH)
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert base64.b64decode(request.json()["payload"]).startswith(b"GOOG4-RSA-SHA256\n")
    returned = {base64.b64decode(reply.body["signedBlob"]).hex() for _, reply in calls}
    assert {query(url)["X-Goog-Signature"] for url in urls} <= returned
    # Metadata credentials learn their email once, however many links are signed at once.
    lookups = [q for q, _ in recording.exchanges if q.path.endswith("/service-accounts/default/")]
    assert len(lookups) == (1 if signer_email is None else 0)

    url = urls[0]
    assert query(url)["X-Goog-Credential"].startswith(f"{SIGNER_EMAIL}/")
    assert query(url)["X-Goog-Expires"] == "600"
    fetched = await fetch(url)
    assert fetched.content == PNG
    assert fetched.headers["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    ("status", "reason", "attempts"),
    [(403, "PERMISSION_DENIED", 1), (500, "INTERNAL", 3)],  # google-auth retries 5xx itself
)
async def test_a_failed_sign_blob_is_upstream_unavailable(
    status: int, reason: str, attempts: int, emulated: str
) -> None:
    fake = FakeServer().start()
    fake.script(Reply(google_error(status, reason), status))
    store = GcsStore(
        BUCKET,
        timeout_s=2.0,
        signing_credentials=token_only_credentials(),
        signer_email=SIGNER_EMAIL,
        auth_request=lambda: RoutedRequest(fake.url),
    )
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await store.signed_url("avatars/u1/g1.png", 60)
    finally:
        fake.stop()
    assert caught.value.retry_after_s == 5
    assert [r.path for r in fake.requests] == [SIGN_BLOB_PATH] * attempts


@pytest.mark.slow
def test_importing_the_adapter_does_not_import_the_function() -> None:
    code = (
        "import api.storage.gcs, sys; "
        "print(any(m == 'avatar' or m.startswith('avatar.') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"
