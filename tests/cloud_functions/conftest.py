"""Fixtures for the function's tests: the real main.py under functions-framework, local
backends over a temporary storage folder, and real photographs (all offline)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient
from function_testing import MAIN_PY, MEDIA_BASE_URL, MEDIA_KEY, Post, encode, load_photo
from PIL import Image
from werkzeug.test import TestResponse

from avatar.backends import Backends, build_backends
from avatar.config import Settings, get_settings


@pytest.fixture(scope="session")
def backends() -> Backends:
    """The local backends (the real face models), built once."""
    return build_backends(Settings(avatar_backend="local"))


@pytest.fixture(scope="session")
def storage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the function's local store writes, for this test session."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture
def function_env(storage_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local backends, the session's storage folder and a known media key, read afresh."""
    monkeypatch.setenv("AVATAR_BACKEND", "local")
    monkeypatch.setenv("STORAGE_DIR", str(storage_dir))
    monkeypatch.setenv("MEDIA_SIGNING_KEY", MEDIA_KEY)
    monkeypatch.setenv("MEDIA_BASE_URL", MEDIA_BASE_URL)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def client(function_env: None) -> FlaskClient:
    """A test client of the real cloud_functions/main.py, loaded by functions-framework."""
    app = functions_framework.create_app(target="generate_animal_avatar", source=str(MAIN_PY))
    return app.test_client()


@pytest.fixture
def post_multipart(client: FlaskClient) -> Post:
    """POST an image file as multipart with form fields (animal=cat unless given)."""

    def post(data: bytes, filename: str = "selfie.jpg", **fields: Any) -> TestResponse:
        form = {"image": (io.BytesIO(data), filename), "animal": "cat", **fields}
        return client.post("/", data=form, content_type="multipart/form-data")

    return post


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    return load_photo("astronaut")


@pytest.fixture(scope="session")
def camera() -> Image.Image:
    return load_photo("camera")


@pytest.fixture(scope="session")
def grace_hopper() -> Image.Image:
    return load_photo("grace_hopper")


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    """A cat: no human face."""
    return load_photo("chelsea")


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    """A coffee cup: no face."""
    return load_photo("coffee")


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut: Image.Image) -> bytes:
    return encode(astronaut)


@pytest.fixture(scope="session")
def grace_hopper_jpeg(grace_hopper: Image.Image) -> bytes:
    return encode(grace_hopper)
