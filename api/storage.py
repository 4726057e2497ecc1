"""The API's storage port: where generated images live, and how their links are signed."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from api.errors import NotFound
from avatar.backends.local.store import sign as sign_media_link

if TYPE_CHECKING:
    from api.config import Settings


class ObjectStore(Protocol):
    """Stored objects named like `avatars/{user_id}/{generation_id}.png`."""

    # True when signing a link is a network round trip (GCS through IAM signBlob), so pages
    # sign their links concurrently; False when it is a cheap local HMAC.
    signs_remotely: bool

    async def signed_url(self, name: str, ttl_s: int) -> str:
        """A link to the object that stops working after `ttl_s` seconds."""
        ...

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        """Store bytes under a name (replacing any object of that name)."""
        ...

    async def read(self, name: str) -> bytes:
        """The object's bytes; NotFound if there is none."""
        ...

    async def delete(self, name: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose name starts with `prefix`."""
        ...


# An empty, "." or ".." path part, a backslash or a NUL: one search, as this runs for every
# item of every history page.
_UNSAFE_NAME = re.compile(r"(?:^|/)\.{0,2}(?:/|$)|[\\\x00]")


def check_object_name(name: str) -> str:
    """The name itself; NotFound for names that could escape the store's root."""
    if _UNSAFE_NAME.search(name):
        raise NotFound("no such object")
    return name


def generation_prefix(user_id: uuid.UUID, generation_id: uuid.UUID) -> str:
    """The name prefix of a generation's stored image, whatever its extension (.jpg, .png)."""
    return f"avatars/{user_id}/{generation_id}."


async def delete_generation_objects(
    store: ObjectStore, user_id: uuid.UUID, generation_id: uuid.UUID
) -> None:
    """Delete whatever the function stored for a generation (the record may not name it)."""
    await store.delete_prefix(generation_prefix(user_id, generation_id))


class LocalFileStore:
    """Objects as files under one directory, served by the API's signed /media/ route."""

    signs_remotely = False

    def __init__(self, root: Path, *, public_base_url: str, signing_key: str) -> None:
        self.root = root.resolve()
        self.public_base_url = public_base_url.rstrip("/")
        self._signing_key = signing_key.encode()

    def path(self, name: str) -> Path:
        """The file of an object name, refusing names that resolve outside the root."""
        path = (self.root / check_object_name(name)).resolve()
        if not path.is_relative_to(self.root):
            raise NotFound("no such object")
        return path

    async def signed_url(self, name: str, ttl_s: int) -> str:
        """`{base}/media/{name}?expires=..&signature=..` (HMAC-SHA256 of `name\\nexpires`)."""
        check_object_name(name)
        expires = int(time.time()) + ttl_s
        signature = sign_media_link(self._signing_key, name, expires)
        # Plain formatting: this runs for every item of every history page.
        query = f"expires={expires}&signature={signature}"
        return f"{self.public_base_url}/media/{quote(name, safe='/')}?{query}"

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        """Write the file atomically (temp file, then rename)."""
        await asyncio.to_thread(self._write, self.path(name), data)

    async def read(self, name: str) -> bytes:
        """The file's bytes, read off the event loop."""
        try:
            return await asyncio.to_thread(self.path(name).read_bytes)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound("no such object") from exc

    async def delete(self, name: str) -> None:
        """Remove the file if it exists."""
        await asyncio.to_thread(self.path(name).unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every file under the prefix (a folder prefix like `avatars/{user_id}/`)."""
        await asyncio.to_thread(self._delete_prefix, prefix)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def _delete_prefix(self, prefix: str) -> None:
        folder, _, stem = prefix.rpartition("/")
        if not folder and not stem:
            msg = "refusing to delete the whole store"
            raise ValueError(msg)
        base = self.path(folder) if folder else self.root
        if not base.is_dir():
            return
        for child in base.iterdir():
            if child.name.startswith(stem):
                _remove(child)
        if not stem and base != self.root:
            with contextlib.suppress(OSError):
                base.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def build_store(settings: Settings) -> ObjectStore:
    """The store the settings name: local files, or a GCS bucket (imported only when chosen)."""
    if settings.storage_backend == "gcs":
        # Imported here so google-cloud-storage loads only when the bucket is used.
        from api.storage_gcs import GcsStore  # type: ignore[import-not-found, import-untyped, unused-ignore]

        store: ObjectStore = GcsStore.from_settings(settings)
        return store
    return LocalFileStore(
        settings.storage_dir,
        public_base_url=settings.public_base_url,
        signing_key=settings.media_signing_key.get_secret_value(),
    )
