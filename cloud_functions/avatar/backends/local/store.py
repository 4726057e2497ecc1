"""LocalFileStore: results as files under a root folder, served by the API as signed /media URLs."""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from avatar.config import UPLOADS_PREFIX
from avatar.errors import Conflict, InvalidRequest


def sign(key: bytes, object_name: str, expires: int) -> str:
    """The media URL signature the API verifies: HMAC-SHA256 of "name\\nexpires", hex."""
    message = f"{object_name}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def upload_name_from_uri(uri: str, bucket: str | None) -> str:
    """The object an input URI names: "uploads/..." or "gs://<bucket>/uploads/...", nothing else.

    Files stand in for the bucket, so a `gs://` URI must name the configured one (GCS_BUCKET).
    """
    name = uri
    if uri.startswith("gs://"):
        named, _, name = uri.removeprefix("gs://").partition("/")
        if bucket is None or named != bucket:
            allowed = f"gs://{bucket}/" if bucket else "no bucket (GCS_BUCKET is unset)"
            raise InvalidRequest(f"gcs_uri may only name objects of {allowed}")
    if not name.startswith(UPLOADS_PREFIX) or name == UPLOADS_PREFIX:
        raise InvalidRequest(f"gcs_uri must name an object under {UPLOADS_PREFIX}")
    return name


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file (and its folders) so that readers see the old file or the whole new one,
    never half of it: a temporary file beside it, renamed into place. For files that may be
    replaced (the batch job's OUTPUT); results in the store are created once (create_once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_once(path: Path, data: bytes) -> bool:
    """Create a file (and its folders) holding `data` unless one of that name exists: whether
    it was created. A temporary file beside it is hard-linked into place, so readers never see
    half of it, and of two creators racing for the name exactly one wins (the link is atomic
    and fails on an existing name, where a rename would replace it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def holds(path: Path, data: bytes) -> bool:
    """Whether `path` is a file with exactly these bytes (the size is compared first)."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False


class LocalFileStore:
    """ObjectStore on a local folder: objects are created once, atomically, never replaced
    (as Cloud Storage's `ifGenerationMatch=0` uploads are)."""

    name = "local"

    def __init__(
        self,
        root: Path,
        media_base_url: str,
        signing_key: bytes,
        clock: Callable[[], float] = time.time,
        *,
        bucket: str | None = None,
    ) -> None:
        self.root = root
        self.bucket = bucket  # the bucket these files stand in for, in `gs://` input URIs
        self.media_base_url = media_base_url.rstrip("/")
        self.signing_key = signing_key
        self.clock = clock

    def put(
        self, name: str, data: bytes, content_type: str, *, deadline: float | None = None
    ) -> None:
        """Create the object once; readers never see half of it.

        An object of that name with the same bytes is a retry of the same write: success,
        nothing written. Other bytes are Conflict, and the stored file stays as it was: a raw
        call naming someone else's user and generation cannot replace their image. A local
        write is too quick to bound: the pipeline checks `deadline` just before.
        """
        path = self.path(name)
        if holds(path, data) or create_once(path, data) or holds(path, data):
            return  # identical already (checked first: a retry writes nothing), or created
        raise Conflict.taken(name)

    def get(self, uri: str) -> bytes:
        """The bytes of an upload named "uploads/..." or "gs://<bucket>/uploads/..."."""
        path = self.path(upload_name_from_uri(uri, self.bucket))
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
        """The file for an object name; InvalidRequest for names that would leave the root.

        The API's store refuses the same names (an empty, "." or ".." part, a leading slash, a
        backslash or a NUL; tests/contract), so both sides agree on what an object name is.
        """
        parts = name.split("/")
        if "\\" in name or "\x00" in name or any(p in {"", ".", ".."} for p in parts):
            raise InvalidRequest(f"invalid object name {name!r}")
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidRequest(f"invalid object name {name!r}")
        return path
