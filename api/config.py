"""The API's settings; the only module of the service that reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]

# Values that ship in the code for a zero-config development run; refused anywhere else.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "dev-only-admin-key",
        "dev-only-media-signing-key",
        "dev-only-webhook-encryption-key",
    }
)
SECRETS = ("admin_api_key", "media_signing_key", "webhook_encryption_key")


class Settings(BaseSettings):
    """Environment variables, named in upper case (`DATABASE_URL`, `FUNCTION_URL`, ...)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"

    # Database: an embedded SQLite file by default, PostgreSQL by URL
    # (postgresql+psycopg://user@host:5432/db).
    database_url: str = f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'animal_avatar.db'}"
    database_pool_size: int = 10

    admin_api_key: SecretStr = SecretStr("dev-only-admin-key")

    # The Cloud Function.
    function_url: str = "http://127.0.0.1:8080"
    function_auth: Literal["none", "id_token"] = "none"
    function_timeout_s: float = 30.0
    function_connect_timeout_s: float = 5.0
    function_max_connections: int = 1000
    function_retry_budget_s: float = 10.0
    function_max_attempts: int = 3

    # Uploads (multipart, read as a stream), and every other request body (JSON), which is
    # refused with 413 request_too_large before it is buffered when over its small limit.
    max_upload_bytes: int = 20 * 1024 * 1024
    max_json_body_bytes: int = Field(default=16 * 1024, gt=0)
    # The demo page at GET / (api/demo); false leaves the API alone on its origin.
    demo_page: bool = True
    max_pixels: int = 50_000_000
    # JPEG, PNG and WebP are forwarded at their size (the function downscales); a HEIC, which
    # the API decodes and re-encodes, is shrunk to this long side on the way.
    forward_max_side_px: int = 1600

    # Per-user limit on generations.
    rate_limit_generations: int = 30
    rate_limit_window_s: int = 3600

    # Generations still pending/processing this long after their last update are resumed or
    # failed. A process touches the records it works on every third of this (its heartbeat), so
    # only a process that stopped (a crash, kill -9) leaves records this stale; the sweep that
    # finds them runs every half of it.
    generation_stale_after_s: float = Field(default=30.0, gt=0)
    # After giving up on the function without its answer, what it stored for the failed records
    # is deleted at once and again this long after (a store begun before its deadline may land).
    function_late_write_s: float = Field(default=30.0, ge=0)
    # On shutdown, background work gets this long to finish; the rest resumes at the next start.
    shutdown_grace_s: float = 10.0

    # Stored results: the local file store (signed /media/ links) or a GCS bucket (V4 signed URLs).
    storage_backend: Literal["local", "gcs"] = "local"
    storage_dir: Path = REPO_ROOT / "var" / "media"
    public_base_url: str = "http://127.0.0.1:8000"
    media_signing_key: SecretStr = SecretStr("dev-only-media-signing-key")
    signed_url_ttl_s: int = 3600
    gcs_bucket: str | None = None
    # Each bucket call (retries included) and each signBlob request gives up after this long.
    gcs_timeout_s: float = 10.0

    # The work queue of async generations: tasks of this process (`inprocess`, resumed after a
    # restart from the database), or Google Cloud Tasks (`cloud_tasks`), which posts each job to
    # POST {WORK_URL}/internal/work/{kind}/{id} with an OIDC token of WORK_SERVICE_ACCOUNT.
    work_queue: Literal["inprocess", "cloud_tasks"] = "inprocess"
    # projects/P/locations/L/queues/Q
    cloud_tasks_queue: str | None = None
    # Another Cloud Tasks endpoint (a local fake or emulator: http://127.0.0.1:PORT, called with
    # anonymous credentials); unset on Google Cloud.
    cloud_tasks_endpoint: str | None = None
    # The API's own base URL as Cloud Tasks reaches it (default PUBLIC_BASE_URL).
    work_url: str | None = None
    # The account whose OIDC token Cloud Tasks sends, and the only one the endpoint accepts.
    work_service_account: str | None = None
    # The token's audience; by default the job's own URL.
    work_audience: str | None = None
    # The queue's max attempts: on the last one, a retryable failure is final.
    work_max_attempts: int = Field(default=10, ge=1)
    # How long Cloud Tasks waits for one job's answer (15 s to 30 min).
    work_dispatch_deadline_s: int = Field(default=600, ge=15, le=1800)
    # One enqueue (its retries on 429/503 included) gives up after this long.
    work_enqueue_timeout_s: float = 5.0
    # Where Google publishes the certificates of its OIDC tokens.
    oidc_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"

    # Completion webhooks (api.webhooks). Their secrets are stored encrypted with this key
    # (several, comma-separated, while rotating it: the first encrypts, any decrypts).
    webhook_encryption_key: SecretStr = SecretStr("dev-only-webhook-encryption-key")
    # One attempt (resolving, connecting, sending, reading the answer) gives up after this long.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # The wait after each failed attempt (comma-separated seconds), each +-jitter; after the
    # last, the delivery has failed.
    webhook_retry_schedule_s: Annotated[tuple[Annotated[float, Field(ge=0)], ...], NoDecode] = (
        5,
        30,
        120,
        600,
        1800,
        7200,
        21600,
    )
    webhook_retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    # Outside development, the only ports a webhook URL may name (comma-separated).
    webhook_allowed_ports: Annotated[
        tuple[Annotated[int, Field(ge=1, le=65535)], ...], NoDecode
    ] = (443,)
    # Deliveries attempted at once by one API process.
    webhook_max_concurrency: int = Field(default=50, ge=1)
    # The in-process queue looks for deliveries that are due (another process's, or left by a
    # stop) this often.
    webhook_sweep_s: float = Field(default=30.0, gt=0)
    # After a rotation, the previous secret also signs for this long.
    webhook_rotation_window_s: float = Field(default=24 * 3600, ge=0)
    # Finished deliveries stay in the log this long.
    webhook_log_retention_days: int = Field(default=30, ge=1)

    # Observability (api.observability): Prometheus metrics at /metrics (false: not collected,
    # and /metrics is 404). With several uvicorn workers, each writes its values under this
    # folder (prometheus_client's multiprocess mode; it must be empty when the server starts)
    # and /metrics adds them up; unset, each process counts in memory.
    metrics_enabled: bool = True
    prometheus_multiproc_dir: Path | None = None
    # Also serve them without a key on 127.0.0.1:METRICS_PORT, for a scraper beside the API that
    # cannot send one (Managed Service for Prometheus' Cloud Run sidecar: containers of one
    # instance share its loopback, and outside traffic reaches only the main port). Unset: only
    # GET /metrics, with the admin key.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # How often the work-queue depth is read from the database for that port's scrapes (GET
    # /metrics reads it at each scrape).
    metrics_refresh_s: float = Field(default=15.0, gt=0)

    @field_validator("webhook_retry_schedule_s", "webhook_allowed_ports", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _require_queue_settings(self) -> Self:
        if self.work_queue != "cloud_tasks":
            return self
        missing = [
            name.upper()
            for name in ("cloud_tasks_queue", "work_service_account")
            if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"WORK_QUEUE=cloud_tasks needs {' and '.join(missing)}")
        return self

    @property
    def work_base_url(self) -> str:
        """The base URL of the jobs Cloud Tasks posts (WORK_URL, else PUBLIC_BASE_URL)."""
        return (self.work_url or self.public_base_url).rstrip("/")

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.is_development:
            return self
        for name in SECRETS:
            secret: SecretStr = getattr(self, name)
            if secret.get_secret_value() in PLACEHOLDER_SECRETS:
                msg = f"{name.upper()} must be a real secret when ENVIRONMENT={self.environment}"
                raise ValueError(msg)
        return self

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class LogSettings(BaseSettings):
    """What the log formatter needs, read apart from `Settings` when logging is configured
    (before the app, and without validating, or echoing, any secret)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # `json`: one JSON object per line for Cloud Logging; `text`: a line for a person to read
    # (`make run` on a terminal).
    log_format: Literal["json", "text"] = "json"
    # The project of the trace names in the log (`projects/P/traces/ID`), which link a line to
    # its trace in the console; unset, the lines carry the bare trace id.
    google_cloud_project: str | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return Settings()
