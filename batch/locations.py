"""Where inputs are read and results written: a local folder or a `gs://bucket/prefix`.

Both kinds list the images under them (recursively, hidden files and folders left out), read and
write objects by a name relative to the location, and keep the manifest: appended line by line
(a file opened for appending; on Cloud Storage, a small object composed onto the manifest, so
the manifest object is always whole), replaced whole, or deleted. Every write is atomic: a
reader (or a rerun after Ctrl-C or a crash) sees a result or manifest either whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

from avatar.backends.local.store import write_atomically
from batch.errors import BatchError

T = TypeVar("T")


@dataclass(frozen=True)
class Item:
    """One input: its name relative to INPUT ("a/b.jpg") and its size in bytes."""

    name: str
    size: int


class Location(Protocol):
    """A folder or a bucket prefix; `given` is how the command line spelled it."""

    given: str

    def join(self, name: str) -> str:
        """The location as given, joined with `name` (what the manifest shows)."""
        ...

    def inside(self, other: Location) -> str | None:
        """Where `other` lies inside this location (a relative prefix, "" when they are the
        same), or None when it lies elsewhere."""
        ...

    def items(self, skip: str | None = None) -> list[Item]:
        """Every file under the location, sorted by name; `skip` a relative prefix to leave out."""
        ...

    def read(self, name: str) -> bytes:
        """The object's bytes; FileNotFoundError when it is gone."""
        ...

    def write(self, name: str, data: bytes, content_type: str) -> None:
        """Create or replace the object, atomically."""
        ...

    def fetch(self, name: str) -> bytes | None:
        """The object's bytes, or None when there is none (the manifest's first run)."""
        ...

    def names(self, prefix: str) -> list[str]:
        """The names of the objects directly in the location that start with `prefix`."""
        ...

    def append(self, name: str, data: bytes) -> None:
        """Add `data` at the end of the object (creating it), atomically."""
        ...

    def delete(self, name: str) -> None:
        """Remove the object if it is there."""
        ...


def location(spec: str) -> Location:
    """The Location a command-line argument names; BatchError when it names none."""
    if not spec.strip():
        raise BatchError("a location is empty: give a folder or gs://bucket/prefix")
    if spec.startswith("gs://"):
        bucket, _, prefix = spec.removeprefix("gs://").partition("/")
        if not bucket:
            raise BatchError(f"{spec!r} names no bucket: write gs://bucket/prefix")
        prefix = prefix.strip("/")
        return GcsPrefix(spec, bucket, f"{prefix}/" if prefix else "")
    return Folder(spec, Path(spec))


def hidden(name: str) -> bool:
    """Whether any part of a relative name starts with a dot (.DS_Store, .git/, temp files)."""
    return any(part.startswith(".") for part in PurePosixPath(name).parts)


def joined(given: str, name: str) -> str:
    """`given` and `name` with exactly one slash between them."""
    return f"{given.rstrip('/')}/{name}" if given.rstrip("/") else f"/{name}"


class Folder:
    """A local folder; results are written to a temporary file, then renamed into place."""

    def __init__(self, given: str, root: Path) -> None:
        self.given = given
        self.root = root

    def join(self, name: str) -> str:
        return joined(self.given, name)

    def inside(self, other: Location) -> str | None:
        if not isinstance(other, Folder):
            return None
        mine, theirs = self.root.resolve(), other.root.resolve()
        if not theirs.is_relative_to(mine):
            return None
        relative = theirs.relative_to(mine).as_posix()
        return "" if relative == "." else f"{relative}/"

    def items(self, skip: str | None = None) -> list[Item]:
        if not self.root.is_dir():
            raise BatchError(f"INPUT {self.given!r} is not a folder")
        found: list[Item] = []
        for directory, folders, files in os.walk(self.root, onerror=_raise):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            for file in files:  # the hidden folders are pruned above
                path = Path(directory, file)
                name = path.relative_to(self.root).as_posix()
                if file.startswith(".") or (skip and name.startswith(skip)):
                    continue
                try:
                    status = path.stat()  # one call: the type and the size
                except FileNotFoundError:  # a dangling link, or gone since the listing
                    continue
                if stat.S_ISREG(status.st_mode):
                    found.append(Item(name, status.st_size))
        return sorted(found, key=lambda item: item.name)

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def write(self, name: str, data: bytes, content_type: str) -> None:
        try:
            write_atomically(self.path(name), data)
        except OSError as exc:
            raise BatchError(f"cannot write {self.join(name)}: {exc.strerror or exc}") from exc

    def fetch(self, name: str) -> bytes | None:
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BatchError(f"cannot read {self.join(name)}: {exc.strerror or exc}") from exc

    def names(self, prefix: str) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if p.name.startswith(prefix))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BatchError(f"cannot list {self.given}: {exc.strerror or exc}") from exc

    def append(self, name: str, data: bytes) -> None:
        path = self.path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as handle:  # one write of whole lines; flushed on close
                handle.write(data)
        except OSError as exc:
            raise BatchError(f"cannot write {self.join(name)}: {exc.strerror or exc}") from exc

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        return self.root.joinpath(*PurePosixPath(name).parts)


def _raise(error: OSError) -> None:
    raise BatchError(f"cannot list {error.filename}: {error.strerror}") from error


class GcsPrefix:
    """Objects under `gs://bucket/prefix/` through google-cloud-storage (STORAGE_EMULATOR_HOST
    points it at an emulator); the client is made once per process, on first use."""

    def __init__(self, given: str, bucket: str, prefix: str) -> None:
        self.given = given
        self.bucket_name = bucket
        self.prefix = prefix  # "" or ending with "/"

    def join(self, name: str) -> str:
        return joined(self.given, name)

    def inside(self, other: Location) -> str | None:
        if not isinstance(other, GcsPrefix) or other.bucket_name != self.bucket_name:
            return None
        if not other.prefix.startswith(self.prefix):
            return None
        return other.prefix.removeprefix(self.prefix)

    def items(self, skip: str | None = None) -> list[Item]:
        def listing() -> list[Item]:
            found = []
            for blob in _client().list_blobs(self.bucket_name, prefix=self.prefix):
                name = blob.name.removeprefix(self.prefix)
                if not name or name.endswith("/") or hidden(name):
                    continue  # a "folder" placeholder or a hidden object
                if skip and name.startswith(skip):
                    continue
                found.append(Item(name, int(blob.size or 0)))
            return sorted(found, key=lambda item: item.name)

        return self._call(listing, f"list {self.given}")

    def read(self, name: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            data: bytes = self._call(lambda: self._blob(name).download_as_bytes(), f"read {name}")
        except NotFound as exc:
            raise FileNotFoundError(self.join(name)) from exc
        return data

    def write(self, name: str, data: bytes, content_type: str) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        # A result's bytes depend only on its input: writing it again is harmless, so retry.
        self._call(
            lambda: self._blob(name).upload_from_string(
                data, content_type=content_type, retry=DEFAULT_RETRY
            ),
            f"write {self.join(name)}",
        )

    def fetch(self, name: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            data: bytes = self._call(lambda: self._blob(name).download_as_bytes(), f"read {name}")
        except NotFound:
            return None
        return data

    def names(self, prefix: str) -> list[str]:
        def listing() -> list[str]:
            blobs = _client().list_blobs(
                self.bucket_name, prefix=self.prefix + prefix, delimiter="/"
            )
            return sorted(blob.name.removeprefix(self.prefix) for blob in blobs)

        return self._call(listing, f"list {self.given}")

    def append(self, name: str, data: bytes) -> None:
        """A new object holding `data`, composed onto the end of `name` (Cloud Storage objects
        cannot be appended to; a compose is one atomic server-side write)."""
        from google.api_core.exceptions import PreconditionFailed

        target = self._blob(name)
        # One writer per manifest (a part per task), so asking first is safe; the precondition
        # still keeps a create from replacing an object that appeared meanwhile.
        if not self._call(target.exists, f"read {self.join(name)}"):
            try:
                self._call(
                    lambda: target.upload_from_string(data, if_generation_match=0),
                    f"write {self.join(name)}",
                )
                return
            except PreconditionFailed:
                pass
        chunk = self._blob(f"{name}.append-{uuid.uuid4().hex}")
        self._call(lambda: chunk.upload_from_string(data), f"write {self.join(name)}")
        try:
            self._call(lambda: target.compose([target, chunk]), f"append to {self.join(name)}")
        finally:
            self.delete(chunk.name.removeprefix(self.prefix))

    def delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self._call(lambda: self._blob(name).delete(), f"delete {self.join(name)}")

    def _blob(self, name: str) -> Any:
        return _client().bucket(self.bucket_name).blob(self.prefix + name)

    def _call(self, call: Callable[[], T], what: str) -> T:
        """Run a storage call; a refusal of access (or a missing bucket) stops the job."""
        from google.api_core.exceptions import Forbidden, NotFound, Unauthorized
        from google.auth.exceptions import DefaultCredentialsError

        try:
            return call()
        except (Forbidden, Unauthorized) as exc:
            msg = f"cannot {what}: access to gs://{self.bucket_name} denied ({exc.message})"
            raise BatchError(msg) from exc
        except DefaultCredentialsError as exc:
            raise BatchError(f"cannot {what}: no Google credentials ({exc})") from exc
        except NotFound as exc:
            if "bucket" in str(exc.message).lower():
                raise BatchError(f"cannot {what}: no bucket gs://{self.bucket_name}") from exc
            raise


@cache
def _client() -> Any:
    """One storage client per process (worker processes make their own)."""
    from google.cloud.storage import Client

    return Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
