"""Fixtures for the batch job's tests: a folder of selfies, broken files and a no-face photo;
the function's local backends over a temporary store; the command line run in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_testing import BUCKET, RunBatch, make_photos, run_batch, write_inputs

from tests.storage_emulator import storage_emulator


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    return make_photos()


@pytest.fixture
def inputs(tmp_path: Path, photos: dict[str, bytes]) -> Path:
    return write_inputs(tmp_path / "in", photos)


@pytest.fixture(autouse=True)
def function_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The function's local backends, storing (only with --user-id) under tmp_path/store."""
    store = tmp_path / "store"
    monkeypatch.setenv("AVATAR_BACKEND", "local")
    monkeypatch.setenv("STORAGE_DIR", str(store))
    for name in ("CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return store


@pytest.fixture(name="run_batch")
def run_batch_fixture() -> RunBatch:
    """`run_batch("--input", ..., "--output", ...)`: the command line, in this process."""
    return run_batch


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator in this process, with one bucket; yields its base URL."""
    with storage_emulator(BUCKET) as url:
        yield url


@pytest.fixture
def bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The emulator's bucket, emptied afterwards; the storage clients of the job point at it."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from batch.locations import _client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    _client.cache_clear()
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    yield client.bucket(BUCKET)
    for blob in client.list_blobs(BUCKET):
        blob.delete()
    _client.cache_clear()
