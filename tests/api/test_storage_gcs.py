"""The API's GCS store (STORAGE_BACKEND=gcs) against gcp-storage-emulator, with V4 links signed
by a key made for this test (Application Default Credentials from a service-account file)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.config import Settings
from api.errors import NotFound, UpstreamUnavailable
from api.storage import ObjectStore, build_store
from tests.cloud_functions.gcp.fakes import BUCKET, SIGNER_EMAIL, FakeServer, Reply, google_error

PNG = b"\x89PNG\r\n\x1a\n" + b"avatar" * 50


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{server._api._httpd.server_address[1]}"
    server.stop()


@pytest.fixture
def adc_key_file(tmp_path: Path) -> Path:
    """A service-account file with a key generated for this test (never committed)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    info = {"type": "service_account", "project_id": "test-project", "private_key_id": "k1",
            "private_key": pem.decode(), "client_email": SIGNER_EMAIL, "client_id": "1",
            "token_uri": "http://127.0.0.1:9/token"}  # fmt: skip
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def store(emulator_url: str, adc_key_file: Path, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc_key_file))
    return build_store(Settings(storage_backend="gcs", gcs_bucket=BUCKET))


async def test_put_read_and_a_signed_link_that_fetches(
    store: ObjectStore, emulator_url: str
) -> None:
    await store.put("avatars/u1/g1.png", PNG, "image/png")
    await store.put("avatars/u1/g1.png", PNG + b"!", "image/png")  # replaces

    assert await store.read("avatars/u1/g1.png") == PNG + b"!"
    url = await store.signed_url("avatars/u1/g1.png", 900)
    assert url.startswith(f"{emulator_url}/{BUCKET}/avatars/u1/g1.png?X-Goog-Algorithm=")
    assert "X-Goog-Expires=900" in url
    fetched = await asyncio.to_thread(requests.get, url, timeout=5)
    assert fetched.content == PNG + b"!"
    assert fetched.headers["Content-Type"] == "image/png"


async def test_read_of_a_missing_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        await store.read("avatars/u1/nothing.png")
    with pytest.raises(NotFound):
        await store.read("avatars/../secrets")


async def test_delete_and_delete_prefix_erase_a_users_objects(store: ObjectStore) -> None:
    for name in ("avatars/u7/a.png", "avatars/u7/b.png", "avatars/u70/c.png"):
        await store.put(name, PNG, "image/png")
    await store.delete("avatars/u7/a.png")
    await store.delete("avatars/u7/a.png")  # missing: not an error
    await store.delete_prefix("avatars/u7/")

    for name in ("avatars/u7/a.png", "avatars/u7/b.png"):
        with pytest.raises(NotFound):
            await store.read(name)
    assert await store.read("avatars/u70/c.png") == PNG


async def test_an_unavailable_bucket_is_the_apis_upstream_unavailable(
    adc_key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = FakeServer().start()
    down.script(Reply(google_error(503, "UNAVAILABLE"), 503))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", down.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc_key_file))
    from api.storage_gcs import GcsStore
    from avatar.backends.gcp import storage as gcs
    from avatar.backends.gcp.retry import Backoff

    store = GcsStore(gcs.GcsStore(BUCKET, backoff=Backoff(initial_s=0.01, max_attempts=2)))
    try:
        with pytest.raises(UpstreamUnavailable):
            await store.read("avatars/u1/g1.png")
    finally:
        down.stop()
    # (google-cloud-storage also fetches bucket metadata in a background thread, for tracing.)
    assert len([r for r in down.requests if r.path.startswith("/download/")]) == 2
