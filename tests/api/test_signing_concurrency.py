"""A history page on GCS signs its links at once: each signature is an IAM round trip."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.db import utcnow
from api.generations.models import GenerationStatus
from api.generations.service import to_public_many
from api.storage_gcs import GcsStore

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


class SlowBucket:
    """The function's bucket adapter, signing through a blocking IAM call."""

    def signed_url(self, name: str, ttl_s: int) -> str:
        time.sleep(ROUND_TRIP_S)
        return f"https://storage.test/{name}"


async def test_the_gcs_store_signs_on_threads_of_its_own() -> None:
    store = GcsStore(SlowBucket())  # type: ignore[arg-type]
    started = time.monotonic()
    urls = await asyncio.gather(*(store.signed_url(f"avatars/u/{i}.png", 60) for i in range(50)))
    assert time.monotonic() - started < 3 * ROUND_TRIP_S
    assert urls[7] == "https://storage.test/avatars/u/7.png"
