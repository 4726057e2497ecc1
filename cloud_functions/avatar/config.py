"""The function's settings; the only module that reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# cloud_functions/avatar/config.py -> the repository root (only meaningful in a checkout).
REPO_ROOT = Path(__file__).resolve().parents[2]

Backend = Literal["local", "gcp"]

# Images passed by reference (`gcs_uri`) must be uploaded under this prefix of the store: the
# function reads nothing else (not other users' avatars), whatever the caller names.
UPLOADS_PREFIX = "uploads/"

# The media key that ships in the code for a zero-config development run; refused elsewhere.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "dev-only-media-signing-key"})


class Settings(BaseSettings):
    """Environment variables, named in upper case (`AVATAR_BACKEND`, `MAX_PIXELS`, ...)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # Outside development the placeholder media key is refused (as the API does).
    environment: Literal["development", "test", "production"] = "development"

    # Which backends run each stage; `avatar_backend` sets all three, the others override it.
    avatar_backend: Backend = "local"
    avatar_detector: Backend | None = None
    avatar_compositor: Backend | None = None
    avatar_store: Literal["local", "gcs"] | None = None

    # Input limits.
    max_request_bytes: int = 32 * 1024 * 1024  # Cloud Functions gen2 caps requests at 32 MB
    max_pixels: int = 50_000_000  # read from the header, checked before decoding
    working_size_px: int = 1600  # long side of the image the pipeline works on

    # Local backends.
    model_dir: Path = REPO_ROOT / ".cache" / "models"
    storage_dir: Path = REPO_ROOT / "var" / "media"
    media_base_url: str = "http://127.0.0.1:8000/media"
    media_signing_key: SecretStr = SecretStr("dev-only-media-signing-key")
    signed_url_ttl_s: int = 3600

    # Google Cloud backends.
    gcp_project: str | None = None
    gcp_location: str = "us-central1"
    gcs_bucket: str | None = None
    vertex_model: str = "gemini-2.5-flash-image"
    vision_api_endpoint: str | None = None  # e.g. http://127.0.0.1:9001 for a local fake
    vertex_api_endpoint: str | None = None
    gcp_deadline_s: float = 25.0  # must fit inside the function's timeout
    compose_fallback: Literal["local", "none"] = "local"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        # Only the local store signs with MEDIA_SIGNING_KEY; gcs signs V4 URLs with IAM.
        if self.environment == "development" or self.store != "local":
            return self
        if self.media_signing_key.get_secret_value() in PLACEHOLDER_SECRETS:
            msg = f"MEDIA_SIGNING_KEY must be a real secret when ENVIRONMENT={self.environment}"
            raise ValueError(msg)
        return self

    @property
    def detector(self) -> Backend:
        return self.avatar_detector or self.avatar_backend

    @property
    def compositor(self) -> Backend:
        return self.avatar_compositor or self.avatar_backend

    @property
    def store(self) -> Literal["local", "gcs"]:
        if self.avatar_store:
            return self.avatar_store
        return "gcs" if self.avatar_backend == "gcp" else "local"


class LogSettings(BaseSettings):
    """What logging needs, read apart from `Settings` when main.py is imported: a bad (or
    secret) value elsewhere can neither stop the logging nor reach a log line."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # `json`: one JSON object per line for Cloud Logging; `text`: a line for a person to read.
    log_format: Literal["json", "text"] = "json"
    # The project of the trace names in the log (`projects/P/traces/ID`, which link a line to
    # its trace); GCP_PROJECT, else GOOGLE_CLOUD_PROJECT; unset, lines carry the bare trace id.
    gcp_project: str | None = Field(
        default=None, validation_alias=AliasChoices("gcp_project", "google_cloud_project")
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (never at import)."""
    return Settings()
