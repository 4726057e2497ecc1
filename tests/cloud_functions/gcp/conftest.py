"""Fixtures for the gcp adapters: fake Google endpoints, the storage emulator, test keys, and
the real function (cloud_functions/main.py under functions-framework) wired to them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient
from PIL import Image

from avatar.backends.gcp.retry import Backoff
from avatar.config import get_settings
from tests.cloud_functions.gcp.fakes import (
    ASTRONAUT_FACE,
    BUCKET,
    PINK,
    SIGNER_EMAIL,
    VERTEX_MODEL,
    FakeServer,
    Reply,
    vertex_image_reply,
    vision_reply,
)
from tests.storage_emulator import storage_emulator

MAIN_PY = Path(__file__).resolve().parents[3] / "cloud_functions" / "main.py"


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
    with storage_emulator(BUCKET) as url:
        yield url


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


@pytest.fixture
def vertex() -> Iterator[FakeServer]:
    """Vertex AI generateContent answering every face with a pink square."""
    server = FakeServer().start()
    server.script(Reply(vertex_image_reply(Image.new("RGB", (1024, 1024), PINK))))
    yield server
    server.stop()


@pytest.fixture
def vision() -> Iterator[FakeServer]:
    """Cloud Vision finding the astronaut's face."""
    server = FakeServer().start()
    server.script(Reply(vision_reply([ASTRONAUT_FACE])))
    yield server
    server.stop()


@pytest.fixture
def gcp_env(
    vision: FakeServer,
    vertex: FakeServer,
    emulator: str,
    service_account_info: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """AVATAR_BACKEND=gcp with every endpoint on a local fake; ADC hold a test key for signing."""
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(service_account_info))
    env = {
        "AVATAR_BACKEND": "gcp",
        "GCP_PROJECT": "test-project",
        "GCP_LOCATION": "us-central1",
        "GCS_BUCKET": BUCKET,
        "VERTEX_MODEL": VERTEX_MODEL,
        "VISION_API_ENDPOINT": vision.url,
        "VERTEX_API_ENDPOINT": vertex.url,
        "GCP_DEADLINE_S": "2",
        "COMPOSE_FALLBACK": "none",
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def client(gcp_env: None) -> FlaskClient:
    """A test client of the real cloud_functions/main.py with the gcp backends."""
    app = functions_framework.create_app(target="generate_animal_avatar", source=str(MAIN_PY))
    return app.test_client()
