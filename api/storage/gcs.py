"""The API's storage port over a Cloud Storage bucket (STORAGE_BACKEND=gcs).

The function writes the objects; the API reads them, signs V4 links to them and erases them.
google-cloud-storage and google-auth block, so every call runs in a worker thread; signing has
a pool of its own. The client and the signing credentials are built on first use, in those
threads. `STORAGE_EMULATOR_HOST` (read by the library itself) points the client at an emulator.

Bucket calls retry with the library's policy until GCS_TIMEOUT_S has passed, each request
bounded by the same timeout, so a down bucket answers within about twice that. Every library,
auth or transport error becomes the API's UpstreamUnavailable here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import http.client
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import google.auth
import requests
import requests.adapters
import urllib3.exceptions
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.auth import iam
from google.auth import transport as auth_transport
from google.auth.transport import requests as auth_requests
from google.cloud import storage
from google.cloud.storage import exceptions as storage_exceptions
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from api.errors import NotFound, UpstreamUnavailable
from api.storage import check_object_name

if TYPE_CHECKING:
    from api.config import Settings

T = TypeVar("T")

# As many as a history page signs at once (api.generations.presenter.SIGNING_CONCURRENCY).
SIGNING_THREADS = 50
# What a client is told to wait before trying again when the bucket or IAM is unavailable.
RETRY_AFTER_S = 5
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# Required by the service-account credentials that wrap an IAM signer; signing never uses it.
TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
# Metadata-server credentials call themselves this until a refresh tells them their email.
UNRESOLVED_EMAIL = "default"

# What a call to the bucket or to IAM can fail with; all of it means "unavailable".
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (
    api_exceptions.GoogleAPIError,  # HTTP errors, and RetryError once the deadline has passed
    auth_exceptions.GoogleAuthError,  # no credentials, failed refresh, failed signBlob
    storage_exceptions.InvalidResponse,
    storage_exceptions.DataCorruption,
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class GcsStore:
    """ObjectStore (api.storage) over one private bucket; links are V4 signed URLs.

    `signing_credentials` default to Application Default Credentials and sign with their key
    when they hold one. Otherwise, or when `signer_email` is given, links are signed through
    IAM signBlob as `signer_email` (default: the credentials' own service account), over
    transports `auth_request` makes (also used to refresh the credentials).
    """

    # Without a private key (Cloud Run), each V4 signature is an IAM signBlob HTTP call.
    signs_remotely = True

    def __init__(
        self,
        bucket: str,
        *,
        timeout_s: float = 10.0,
        retry: Retry | None = None,
        signing_credentials: auth_credentials.Credentials | None = None,
        signer_email: str | None = None,
        auth_request: Callable[[], auth_transport.Request] | None = None,
    ) -> None:
        self.bucket_name = bucket
        self._timeout_s = timeout_s
        self._retry = retry if retry is not None else DEFAULT_RETRY.with_timeout(timeout_s)
        self._given_credentials = signing_credentials
        self._signer_email = signer_email
        self._auth_request = auth_request or _pooled_auth_request
        self._client = _Once(storage.Client)
        self._signing = _Once(self._build_signing_credentials)
        # The default executor (a handful of threads on a small instance) would queue a page's
        # signatures behind each other; its threads start only when first needed.
        self._signing_pool = ThreadPoolExecutor(SIGNING_THREADS, thread_name_prefix="gcs-sign")

    @classmethod
    def from_settings(cls, settings: Settings) -> GcsStore:
        """The store for GCS_BUCKET, bounded by GCS_TIMEOUT_S."""
        if not settings.gcs_bucket:
            msg = "GCS_BUCKET must be set when STORAGE_BACKEND=gcs"
            raise ValueError(msg)
        return cls(settings.gcs_bucket, timeout_s=settings.gcs_timeout_s)

    async def signed_url(self, name: str, ttl_s: int) -> str:
        """A V4 signed GET URL valid for `ttl_s` seconds."""
        name = check_object_name(name)
        sign = functools.partial(self._sign, name, ttl_s)
        return await _off_loop(sign, self._signing_pool, service="Cloud Storage URL signing")

    async def read(self, name: str) -> bytes:
        """The object's bytes; NotFound if there is none."""
        name = check_object_name(name)
        return await _off_loop(functools.partial(self._download, name))

    async def delete(self, name: str) -> None:
        """Delete one object; a missing object is not an error."""
        name = check_object_name(name)
        await _off_loop(functools.partial(self._delete, name))

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose name starts with `prefix` (never the whole bucket)."""
        if not prefix:
            msg = "refusing to delete the whole bucket (empty prefix)"
            raise ValueError(msg)
        # The folder part is held to the rules of a name, as the local store does.
        folder = prefix.rpartition("/")[0]
        if folder:
            check_object_name(folder)
        await _off_loop(functools.partial(self._delete_prefix, prefix))

    def _bucket(self) -> Any:
        return self._client.get().bucket(self.bucket_name)

    def _sign(self, name: str, ttl_s: int) -> str:
        blob = self._bucket().blob(name)
        url = blob.generate_signed_url(
            version="v4",
            method="GET",
            expiration=dt.timedelta(seconds=ttl_s),
            credentials=self._signing.get(),
        )
        return str(url)

    def _download(self, name: str) -> bytes:
        blob = self._bucket().blob(name)
        try:
            data = blob.download_as_bytes(retry=self._retry, timeout=self._timeout_s)
        except api_exceptions.NotFound as exc:
            raise NotFound("no such object") from exc
        return bytes(data)

    def _delete(self, name: str) -> None:
        # A retry after a delete whose answer was lost meets a 404: the object is gone either way.
        with contextlib.suppress(api_exceptions.NotFound):
            self._bucket().blob(name).delete(retry=self._retry, timeout=self._timeout_s)

    def _delete_prefix(self, prefix: str) -> None:
        listing = self._client.get().list_blobs(
            self.bucket_name, prefix=prefix, retry=self._retry, timeout=self._timeout_s
        )
        # Listed in full first: the pages are fetched lazily, and deleting while paging is
        # only safe by an implementation detail of page tokens.
        for name in [blob.name for blob in listing]:
            self._delete(name)

    def _build_signing_credentials(self) -> auth_credentials.Signing:
        """Credentials that sign: ones holding a key as they are, others through IAM."""
        credentials = self._given_credentials
        if credentials is None:
            credentials, _project = google.auth.default(scopes=SCOPES)
        if isinstance(credentials, auth_credentials.Signing) and self._signer_email is None:
            return credentials
        request = _TimeoutRequest(self._auth_request(), self._timeout_s)
        email = self._signer_email or _service_account_email(credentials, request)
        signer = iam.Signer(request, credentials, email)  # type: ignore[no-untyped-call]
        # The library's service-account credentials only need a signer and an email to sign.
        signing: auth_credentials.Signing
        signing = service_account.Credentials(signer, email, TOKEN_URI)  # type: ignore[no-untyped-call]
        return signing


def _pooled_auth_request() -> auth_transport.Request:
    """google-auth's requests transport, with a connection for each signing thread."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=SIGNING_THREADS)
    session.mount("https://", adapter)
    session.mount("http://", adapter)  # the metadata server
    return auth_requests.Request(session)


def _service_account_email(
    credentials: auth_credentials.Credentials, request: auth_transport.Request
) -> str:
    """The service account token-only credentials act as; a refresh reveals it if need be."""
    email = getattr(credentials, "service_account_email", None)
    if not email or email == UNRESOLVED_EMAIL:
        credentials.refresh(request)  # type: ignore[no-untyped-call]
        email = getattr(credentials, "service_account_email", None)
    if not email or email == UNRESOLVED_EMAIL:
        # A deployment error, not an outage: the detail says what is missing.
        detail = "no private key, and no service account to sign Cloud Storage URLs as"
        raise UpstreamUnavailable(detail, retry_after_s=RETRY_AFTER_S)
    return str(email)


class _TimeoutRequest(auth_transport.Request):
    """A transport whose every request gives up after `timeout_s` (signBlob sets none)."""

    def __init__(self, inner: auth_transport.Request, timeout_s: float) -> None:
        self._inner = inner
        self._timeout_s = timeout_s

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> auth_transport.Response:
        """The inner transport's answer, within the shorter of both timeouts."""
        bounded = self._timeout_s if timeout is None else min(timeout, self._timeout_s)
        response: auth_transport.Response = self._inner(
            url, method, body, headers, timeout=bounded, **kwargs
        )
        return response


class _Once(Generic[T]):
    """A value built on its first use, once, however many threads ask for it at the same time."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The value; a build that raised is tried again at the next use."""
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value


async def _off_loop(
    call: Callable[[], T], executor: Executor | None = None, *, service: str = "Cloud Storage"
) -> T:
    """Run a blocking call in a worker thread; upstream failures become UpstreamUnavailable."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, call)
    except UPSTREAM_ERRORS as exc:
        raise _unavailable(exc, service) from exc


def _unavailable(exc: BaseException, service: str) -> UpstreamUnavailable:
    """The API's error for a failed call; the detail names no URL, email or message of theirs."""
    if isinstance(exc, api_exceptions.RetryError):
        what = "did not answer in time"
    elif isinstance(exc, api_exceptions.GoogleAPICallError) and exc.code is not None:
        what = f"answered HTTP {exc.code}"
    else:
        what = f"call failed ({type(exc).__name__})"
    return UpstreamUnavailable(f"{service} {what}", retry_after_s=RETRY_AFTER_S)
