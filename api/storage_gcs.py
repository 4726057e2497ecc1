"""The API's storage port over a Cloud Storage bucket (STORAGE_BACKEND=gcs).

The blocking google-cloud-storage calls run in worker threads, never on the event loop. The
bucket logic (V4 signing with a key or through IAM signBlob, retries within a deadline) is the
function's own adapter, avatar.backends.gcp.storage, shared rather than written twice; its
errors are translated into the API's family here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from api.errors import ApiError, NotFound
from api.storage import check_object_name
from avatar.backends.gcp import storage as gcs
from avatar.errors import AvatarError

if TYPE_CHECKING:
    from api.config import Settings

T = TypeVar("T")

# As many as a history page signs at once (api.generations.service.SIGNING_CONCURRENCY).
SIGNING_THREADS = 50


class GcsStore:
    """ObjectStore (api.storage) over one bucket; objects are private, links are V4 signed."""

    # Without a private key (Cloud Run), each V4 signature is an IAM signBlob HTTP call.
    signs_remotely = True

    def __init__(self, bucket: gcs.GcsStore) -> None:
        self._bucket = bucket
        # Signing has threads of its own: a history page signs its links at once, and the
        # default executor (a handful of threads on a small instance) would queue them.
        self._signing = ThreadPoolExecutor(SIGNING_THREADS, thread_name_prefix="gcs-sign")

    @classmethod
    def from_settings(cls, settings: Settings) -> GcsStore:
        """The store for GCS_BUCKET (STORAGE_EMULATOR_HOST points it at an emulator)."""
        if not settings.gcs_bucket:
            msg = "GCS_BUCKET must be set when STORAGE_BACKEND=gcs"
            raise ValueError(msg)
        return cls(gcs.GcsStore(settings.gcs_bucket))

    async def signed_url(self, name: str, ttl_s: int) -> str:
        """A V4 signed GET URL valid for `ttl_s` seconds."""
        name = check_object_name(name)
        loop = asyncio.get_running_loop()
        call = functools.partial(self._bucket.signed_url, name, ttl_s)
        try:
            return await loop.run_in_executor(self._signing, call)
        except AvatarError as exc:
            raise _translated(exc) from exc

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        """Store bytes under a name, replacing any object of that name."""
        name = check_object_name(name)
        await _off_loop(lambda: self._bucket.put(name, data, content_type, overwrite=True))

    async def read(self, name: str) -> bytes:
        """The object's bytes; NotFound if there is none."""
        data = await _off_loop(self._bucket.read, check_object_name(name))
        if data is None:
            raise NotFound("no such object")
        return data

    async def delete(self, name: str) -> None:
        """Delete one object; a missing object is not an error."""
        await _off_loop(self._bucket.delete, check_object_name(name))

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose name starts with `prefix`."""
        await _off_loop(self._bucket.delete_prefix, prefix)


async def _off_loop(call: Callable[..., T], *args: Any) -> T:
    """Run a blocking bucket call in a thread; the function's errors become the API's."""
    try:
        return await asyncio.to_thread(call, *args)
    except AvatarError as exc:
        raise _translated(exc) from exc


def _translated(exc: AvatarError) -> ApiError:
    return ApiError.from_code(exc.code, exc.detail, retry_after_s=exc.retry_after_s)
