"""Results in Cloud Storage (google-cloud-storage): create-only uploads and V4 signed URLs.

Uploads carry `if_generation_match=0` ("only if no such object exists"), so a result is never
replaced. The 412 an upload meets when the name is taken is a success only if the object there
holds the very same bytes (its MD5 is compared): a retry of this write, whose first attempt
landed. Other bytes are 409 conflict: a caller naming someone else's user and generation
cannot replace their image.
`STORAGE_EMULATOR_HOST` (read by the library itself) points the client at an emulator.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
from typing import TYPE_CHECKING, Any

from avatar.backends.gcp import errors
from avatar.backends.gcp.clients import Lazy
from avatar.backends.gcp.retry import MIN_ATTEMPT_S, Backoff, call_with_retry, stage_deadline_s
from avatar.config import UPLOADS_PREFIX
from avatar.errors import AvatarError, Conflict, InvalidRequest, UpstreamUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from avatar.config import Settings

SERVICE = "Cloud Storage"
IAM_ENDPOINT = "https://iamcredentials.googleapis.com"  # IAM Credentials API
# Results are immutable (a new generation gets a new name) and private: cache, but not shared.
CACHE_CONTROL = "private, max-age=86400, immutable"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# How long past the caller's deadline an upload may still run: one begun just before it gets
# to finish rather than being cut at once. The API sends a deadline some time before it stops
# waiting, so that what lands in the grace is still seen (and what lands later, cleaned up).
DEADLINE_GRACE_S = 1.0


def md5_base64(data: bytes) -> str:
    """The object metadata's `md5Hash` for these bytes: base64 of the MD5 digest."""
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def upload_budget_s(deadline_s: float, deadline: float | None, now: float) -> float:
    """The seconds an upload may take: the store's own share, cut to what is left before the
    caller's `deadline` (Unix time) plus DEADLINE_GRACE_S; never under one attempt's minimum."""
    if deadline is None:
        return deadline_s
    return max(MIN_ATTEMPT_S, min(deadline_s, deadline - now + DEADLINE_GRACE_S))


class GcsStore:
    """ObjectStore over one bucket; the client and signing credentials are built on first use.

    `signing_credentials` sign URLs (default: Application Default Credentials); with no private
    key in them, signing goes through IAM signBlob at `iam_endpoint`.
    """

    name = "gcs"

    def __init__(
        self,
        bucket: str,
        *,
        project: str | None = None,
        signing_credentials: Any = None,
        iam_endpoint: str = IAM_ENDPOINT,
        deadline_s: float = 25.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.bucket_name = bucket
        self._client: Lazy[Any] = Lazy(lambda: _build_client(project))
        self._signing: Lazy[Any] = Lazy(lambda: self._signer(signing_credentials))
        self._iam_endpoint = iam_endpoint
        self._deadline_s = deadline_s
        self._backoff = backoff

    @classmethod
    def from_settings(cls, settings: Settings) -> GcsStore:
        """The store the settings describe (GCS_BUCKET, GCP_PROJECT, GCP_DEADLINE_S)."""
        if not settings.gcs_bucket:
            msg = "GCS_BUCKET must be set for the gcs store"
            raise ValueError(msg)
        return cls(
            settings.gcs_bucket,
            project=settings.gcp_project,
            deadline_s=stage_deadline_s(settings.gcp_deadline_s, "store"),
        )

    def put(
        self, name: str, data: bytes, content_type: str, *, deadline: float | None = None
    ) -> None:
        """Create `name` holding `data` once; a retry that finds the same bytes there succeeds,
        other bytes there are Conflict (the object is left as it was).

        `deadline` (Unix time, the caller's) bounds the upload with its retries (plus a grace).
        """
        from google.api_core.exceptions import PreconditionFailed

        blob = self._bucket().blob(name)
        blob.cache_control = CACHE_CONTROL

        def upload(timeout_s: float) -> None:
            try:
                blob.upload_from_string(
                    data,
                    content_type=content_type,
                    if_generation_match=0,  # only if no object has the name yet
                    retry=None,
                    timeout=timeout_s,
                )
            except PreconditionFailed:
                if self._stored_md5(name, timeout_s) != md5_base64(data):
                    raise Conflict.taken(name) from None
                # the same bytes: an earlier attempt of this very write landed

        self._call(upload, deadline_s=upload_budget_s(self._deadline_s, deadline, time.time()))

    def get(self, uri: str) -> bytes:
        """The bytes of `gs://<this bucket>/uploads/<object>`; anything else is refused."""
        data = self.read(self._object_name(uri))
        if data is None:
            raise InvalidRequest(f"no readable object at {uri}")
        return data

    def read(self, name: str) -> bytes | None:
        """The object's bytes, or None when there is no such object (or it may not be read)."""
        from google.api_core.exceptions import Forbidden, NotFound

        blob = self._bucket().blob(name)
        try:
            return bytes(self._call(lambda t: blob.download_as_bytes(retry=None, timeout=t)))
        except AvatarError as exc:
            if isinstance(exc.__cause__, NotFound | Forbidden):
                return None
            raise

    def signed_url(self, name: str, ttl_s: int) -> str:
        """A V4 signed GET URL for `name`, valid for `ttl_s` seconds (IAM errors are retried)."""
        blob = self._bucket().blob(name)
        credentials = self._signing.get()

        def sign(_timeout_s: float) -> str:
            return str(
                blob.generate_signed_url(
                    version="v4",
                    method="GET",
                    expiration=dt.timedelta(seconds=ttl_s),
                    credentials=credentials,
                )
            )

        return str(self._call(sign))

    def delete(self, name: str) -> None:
        """Remove `name`; an object already gone is fine."""
        from google.api_core.exceptions import NotFound

        def remove(timeout_s: float) -> None:
            try:
                self._bucket().blob(name).delete(retry=None, timeout=timeout_s)
            except NotFound:
                return

        self._call(remove)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose name starts with `prefix`; how many were removed."""
        if not prefix:
            msg = "refusing to delete a whole bucket (empty prefix)"
            raise ValueError(msg)
        names = self._call(
            lambda t: [
                b.name
                for b in self._client.get().list_blobs(
                    self.bucket_name, prefix=prefix, retry=None, timeout=t
                )
            ]
        )
        for name in names:
            self.delete(name)
        return len(names)

    def _call(self, call: Callable[[float], Any], *, deadline_s: float | None = None) -> Any:
        """`call(timeout_s)` with retries inside `deadline_s` (the store's share by default)."""
        try:
            return call_with_retry(
                call,
                deadline_s=self._deadline_s if deadline_s is None else deadline_s,
                is_retryable=errors.is_retryable,
                backoff=self._backoff,
            )
        except Exception as exc:
            raise errors.translate(exc, SERVICE) from exc

    def _bucket(self) -> Any:
        return self._client.get().bucket(self.bucket_name)

    def _stored_md5(self, name: str, timeout_s: float) -> str | None:
        """The MD5 (base64) of the object now named `name`; None when it is gone again (or is
        a composed object, which has none and which this store never writes)."""
        existing = self._bucket().get_blob(name, retry=None, timeout=timeout_s)
        md5: str | None = None if existing is None else existing.md5_hash
        return md5

    def _object_name(self, uri: str) -> str:
        """The upload an input URI names: only under uploads/ of this bucket (not avatars/)."""
        prefix = f"gs://{self.bucket_name}/{UPLOADS_PREFIX}"
        parts = uri.removeprefix(prefix).split("/")
        if not uri.startswith(prefix) or any(part in {"", ".", ".."} for part in parts):
            raise InvalidRequest(f"gcs_uri must name an object under {prefix}")
        return uri.removeprefix(f"gs://{self.bucket_name}/")

    def _signer(self, credentials: Any) -> Any:
        """Credentials that can sign: the given ones, else Application Default Credentials."""
        import google.auth

        from avatar.backends.gcp.signing import signing_credentials

        try:
            if credentials is None:
                credentials, _ = google.auth.default(scopes=_SCOPES)
            return signing_credentials(credentials, self._iam_endpoint, self._deadline_s)
        except Exception as exc:
            detail = f"no credentials that can sign {SERVICE} URLs: {exc}"
            raise UpstreamUnavailable(detail, retry_after_s=errors.DEFAULT_RETRY_AFTER_S) from exc


def _build_client(project: str | None) -> Any:
    """The client finds its own credentials (anonymous when STORAGE_EMULATOR_HOST is set)."""
    from google.cloud.storage import Client

    return Client(project=project)
