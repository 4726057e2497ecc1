"""LocalFileStore: results as files under a root folder, served by the API as signed /media URLs."""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from avatar.errors import InvalidRequest


def sign(key: bytes, object_name: str, expires: int) -> str:
    """The media URL signature the API verifies: HMAC-SHA256 of "name\\nexpires", hex."""
    message = f"{object_name}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def object_name_from_uri(uri: str) -> str:
    """The object name in "gs://<bucket>/<name>" or a bare name (the bucket is not checked)."""
    if uri.startswith("gs://"):
        _, _, rest = uri[len("gs://") :].partition("/")
        return rest
    return uri


class LocalFileStore:
    """ObjectStore on a local folder; writes are atomic (temp file + rename)."""

    name = "local"

    def __init__(
        self,
        root: Path,
        media_base_url: str,
        signing_key: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.media_base_url = media_base_url.rstrip("/")
        self.signing_key = signing_key
        self.clock = clock

    def put(self, name: str, data: bytes, content_type: str) -> None:
        """Write the object; readers see the old file or the whole new one, never half of it."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, uri: str) -> bytes:
        """The bytes of an object named by "gs://bucket/name" or "name"."""
        path = self.path(object_name_from_uri(uri))
        if not path.is_file():
            raise InvalidRequest(f"no stored object at {uri!r}")
        return path.read_bytes()

    def signed_url(self, name: str, ttl_s: int) -> str:
        """`{media_base_url}/{name}?expires=...&signature=...`, valid for ttl_s seconds."""
        self.path(name)  # refuse names that would escape the root
        expires = int(self.clock()) + ttl_s
        signature = sign(self.signing_key, name, expires)
        return f"{self.media_base_url}/{quote(name)}?expires={expires}&signature={signature}"

    def path(self, name: str) -> Path:
        """The file for an object name; InvalidRequest for names that would leave the root."""
        parts = PurePosixPath(name).parts
        unsafe = not parts or name.startswith("/") or "\\" in name or "\x00" in name
        if unsafe or any(p in {"..", "."} for p in parts):
            raise InvalidRequest(f"invalid object name {name!r}")
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidRequest(f"invalid object name {name!r}")
        return path
