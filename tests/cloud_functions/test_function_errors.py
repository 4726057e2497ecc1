"""Failures that are not the caller's: always a JSON 500, the cause in the log, never HTML."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient
from function_testing import MAIN_PY
from PIL import Image

import avatar.backends
from avatar.config import get_settings
from avatar.faces import Face

SECRET_LOOKING = "boom-3f9c"  # a detail that must stay in the log, not in the answer


class ExplodingDetector:
    """A detector with a bug: it raises something no adapter translated."""

    name = "local"

    def detect(self, image: Image.Image) -> list[Face]:
        raise RuntimeError(f"{SECRET_LOOKING}: index out of range in the model glue")


def load_client() -> FlaskClient:
    """The real main.py, loaded afresh (it binds build_backends when it is loaded)."""
    app = functions_framework.create_app(target="generate_animal_avatar", source=str(MAIN_PY))
    return app.test_client()


def assert_internal_error(response: Any) -> dict[str, Any]:
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    body = dict(response.get_json())
    assert body["error"] == "internal_error"
    assert body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    assert "<html" not in response.get_data(as_text=True).lower()
    return body


@pytest.fixture
def exploding_client(function_env: None, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    real: Callable[..., avatar.backends.Backends] = avatar.backends.build_backends

    def build(settings: Any) -> avatar.backends.Backends:
        return dataclasses.replace(real(settings), detector=ExplodingDetector())

    monkeypatch.setattr(avatar.backends, "build_backends", build)
    return load_client()


def test_an_unexpected_exception_is_a_json_500(
    exploding_client: FlaskClient, astronaut_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    response = exploding_client.post("/?animal=cat", data=astronaut_jpeg, content_type="image/jpeg")

    body = assert_internal_error(response)
    assert SECRET_LOOKING not in body["detail"]
    failure = next(r for r in caplog.records if r.levelname == "ERROR")
    assert failure.exc_info is not None
    assert SECRET_LOOKING in str(failure.exc_info[1])
    assert astronaut_jpeg[:64] not in caplog.text.encode(errors="ignore")


def test_bad_input_still_gets_its_4xx_next_to_a_broken_backend(
    exploding_client: FlaskClient,
) -> None:
    response = exploding_client.post("/", data=b"[" * 100_000, content_type="application/json")

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("environment", "logged"),
    [
        ({"AVATAR_STORE": "gcs"}, "GCS_BUCKET must be set"),
        ({"AVATAR_COMPOSITOR": "gcp", "GCS_BUCKET": "b"}, "GCP_PROJECT must be set"),
        ({"ENVIRONMENT": "production", "MEDIA_SIGNING_KEY": "changeme"}, "MEDIA_SIGNING_KEY"),
        ({"MAX_PIXELS": "lots"}, "max_pixels"),
    ],
)
def test_a_misconfiguration_is_a_json_500_and_a_clear_log_line(
    function_env: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    astronaut_jpeg: bytes,
    environment: dict[str, str],
    logged: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    response = load_client().post("/?animal=cat", data=astronaut_jpeg, content_type="image/jpeg")

    assert "misconfigured" in assert_internal_error(response)["detail"]
    assert "the function is misconfigured: " in caplog.text
    assert logged in caplog.text
    assert "changeme" not in caplog.text  # settings errors name fields, not the values read
