"""Results as files under one folder (the function's local store writes them there), served by
the API's signed /media/ route."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path
from urllib.parse import quote

from api.errors import NotFound
from api.security import media_signature
from api.storage import check_object_name


class LocalFileStore:
    """ObjectStore on a folder: reads, deletions and signed `/media/` links."""

    signs_remotely = False

    def __init__(self, root: Path, *, public_base_url: str, signing_key: str) -> None:
        self.root = root.resolve()
        self.public_base_url = public_base_url.rstrip("/")
        self._signing_key = signing_key

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
        signature = media_signature(self._signing_key, name, expires)
        # Plain formatting: this runs for every item of every history page.
        query = f"expires={expires}&signature={signature}"
        return f"{self.public_base_url}/media/{quote(name, safe='/')}?{query}"

    async def read(self, name: str) -> bytes:
        """The file's bytes, read off the event loop."""
        try:
            return await asyncio.to_thread(self.path(name).read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound("no such object") from exc

    async def delete(self, name: str) -> None:
        """Remove the file if it exists."""
        await asyncio.to_thread(self.path(name).unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every file under the prefix (a folder prefix like `avatars/{user_id}/`)."""
        await asyncio.to_thread(self._delete_prefix, prefix)

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
