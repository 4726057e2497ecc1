"""A history page on GCS signs its links at once: each signature is an IAM round trip."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import google.auth.crypt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from api.db import utcnow
from api.generations.models import GenerationStatus
from api.generations.presenter import to_public_many
from api.storage.gcs import GcsStore

ROUND_TRIP_S = 0.2


@dataclass
class Row:
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    status: GenerationStatus = GenerationStatus.succeeded
    animal: str = "fox"
    object_name: str | None = None
    error_code: str | None = None
    error_detail: str | None = None
    faces: list[dict[str, Any]] | None = None
    style: str = "character"
    pack_id: uuid.UUID | None = None
    created_at: datetime = field(default_factory=utcnow)
    completed_at: datetime | None = None

    def __post_init__(self) -> None:
        self.object_name = f"avatars/u/{self.id}.png"


class SlowSigningStore:
    """Signs like GCS without a key: one network round trip per link."""

    signs_remotely = True

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0

    async def signed_url(self, name: str, ttl_s: int) -> str:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(ROUND_TRIP_S)
        self.in_flight -= 1
        return f"https://storage.test/{name}?sig=1"


async def test_a_page_of_50_takes_about_one_round_trip_not_50(settings) -> None:
    rows = [Row() for _ in range(50)]
    store = SlowSigningStore()
    started = time.monotonic()
    items = await to_public_many(rows, store, settings)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert elapsed < 3 * ROUND_TRIP_S  # 50 in turn would take 10 s
    assert [item.id for item in items] == [row.id for row in rows]  # the page's order kept
    assert all(
        item.image_url == f"https://storage.test/{row.object_name}?sig=1"
        for item, row in zip(items, rows, strict=True)
    )
    assert store.most_in_flight == 50


class SlowSigner(google.auth.crypt.Signer):
    """Signs with a real key after a pause, like an IAM signBlob round trip."""

    def __init__(self, inner: google.auth.crypt.Signer) -> None:
        self._inner = inner

    @property
    def key_id(self) -> str | None:
        return None

    def sign(self, message: bytes | str) -> bytes:
        time.sleep(ROUND_TRIP_S)
        return self._inner.sign(message)


async def test_the_gcs_store_signs_on_threads_of_its_own(monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # no request is made
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = SlowSigner(google.auth.crypt.RSASigner.from_string(pem))
    credentials = service_account.Credentials(
        signer, "signer@test.iam.gserviceaccount.com", "http://127.0.0.1:9/token"
    )
    store = GcsStore("bucket", signing_credentials=credentials)
    started = time.monotonic()
    urls = await asyncio.gather(*(store.signed_url(f"avatars/u/{i}.png", 60) for i in range(50)))
    assert time.monotonic() - started < 4 * ROUND_TRIP_S  # 50 in turn would take 10 s
    assert "/bucket/avatars/u/7.png?X-Goog-Algorithm=GOOG4-RSA-SHA256" in urls[7]
