"""Fixtures for the gcp adapters: fake Google endpoints, the storage emulator, test keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from PIL import Image

from avatar.backends.gcp.retry import Backoff
from tests.cloud_functions.gcp.fakes import BUCKET, SIGNER_EMAIL, FakeServer


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    """A scriptable fake Google REST endpoint."""
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def fast_backoff() -> Backoff:
    """Real backoff arithmetic with millisecond waits, so retry tests stay quick."""
    return Backoff(initial_s=0.01, max_s=0.02, max_attempts=3)


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """A key made for this test session only (never committed)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def service_account_info(rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "test-key-1",
        "private_key": pem,
        "client_email": SIGNER_EMAIL,
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",  # never called: the emulator needs no token
    }


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator in this process, with the test bucket; yields its base URL."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    server.start()
    port = server._api._httpd.server_address[1]
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def emulator(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The emulator's URL, with STORAGE_EMULATOR_HOST pointing the storage client at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return gcs_emulator


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """A real photo with one frontal face (skimage ships it; no download)."""
    from skimage import data

    return Image.fromarray(np.asarray(data.astronaut())).convert("RGB")
