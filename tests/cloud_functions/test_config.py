"""The function's settings: placeholder secrets are refused outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from avatar.config import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test passes counts, not the shell's variables."""
    for name in ("ENVIRONMENT", "MEDIA_SIGNING_KEY", "AVATAR_BACKEND", "AVATAR_STORE"):
        monkeypatch.delenv(name, raising=False)


def test_development_runs_on_the_placeholder_key() -> None:
    settings = Settings()

    assert settings.environment == "development"
    assert settings.media_signing_key.get_secret_value() == "dev-only-media-signing-key"


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize("key", [None, "", "changeme", "dev-only-media-signing-key"])
def test_placeholder_key_is_refused_outside_development(environment: str, key: str | None) -> None:
    given = {} if key is None else {"media_signing_key": key}

    with pytest.raises(ValidationError, match="MEDIA_SIGNING_KEY must be a real secret"):
        Settings(environment=environment, avatar_store="local", **given)


def test_placeholder_is_refused_when_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")

    with pytest.raises(ValidationError, match="ENVIRONMENT=production"):
        Settings()


def test_a_real_key_is_accepted_in_production() -> None:
    settings = Settings(environment="production", media_signing_key="k" * 64)

    assert settings.store == "local"


def test_the_gcs_store_needs_no_media_key() -> None:
    # gcs signs V4 URLs through IAM; MEDIA_SIGNING_KEY is not used at all.
    settings = Settings(environment="production", avatar_backend="gcp", gcs_bucket="b")

    assert settings.store == "gcs"


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(environment="staging")
