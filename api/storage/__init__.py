"""The API's storage port: where the function's results live, how their links are signed.

The function writes the objects; the API signs links to them, serves them (local files) and
erases them. Object names are `avatars/{user_id}/{generation_id}.{jpg|png}`: the function
names them so (tests/contract checks both sides agree), the API finds them by prefix.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Protocol

from api.errors import NotFound

if TYPE_CHECKING:
    from api.config import Settings

AVATARS_PREFIX = "avatars/"


class ObjectStore(Protocol):
    """Stored results, named like `avatars/{user_id}/{generation_id}.png`."""

    # True when signing a link is a network round trip (GCS through IAM signBlob), so pages
    # sign their links concurrently; False when it is a cheap local HMAC.
    signs_remotely: bool

    async def signed_url(self, name: str, ttl_s: int) -> str:
        """A link to the object that stops working after `ttl_s` seconds."""
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


# An empty, "." or ".." path part, a leading slash, a backslash or a NUL: one search, as this
# runs for every item of every history page. The function's local store refuses the same names.
_UNSAFE_NAME = re.compile(r"(?:^|/)\.{0,2}(?:/|$)|[\\\x00]")


def check_object_name(name: str) -> str:
    """The name itself; NotFound for names that could escape the store's root."""
    if _UNSAFE_NAME.search(name):
        raise NotFound("no such object")
    return name


def user_prefix(user_id: uuid.UUID) -> str:
    """Where every stored image of a user lives."""
    return f"{AVATARS_PREFIX}{user_id}/"


def generation_prefix(user_id: uuid.UUID, generation_id: uuid.UUID) -> str:
    """The name prefix of a generation's stored image, whatever its extension (.jpg, .png)."""
    return f"{user_prefix(user_id)}{generation_id}."


async def delete_generation_objects(
    store: ObjectStore, user_id: uuid.UUID, generation_id: uuid.UUID
) -> None:
    """Delete whatever the function stored for a generation (the record may not name it)."""
    await store.delete_prefix(generation_prefix(user_id, generation_id))


def build_store(settings: Settings) -> ObjectStore:
    """The store the settings name: local files, or a GCS bucket (imported only when chosen)."""
    if settings.storage_backend == "gcs":
        # Imported here so google-cloud-storage loads only when the bucket is used.
        from api.storage.gcs import GcsStore

        return GcsStore.from_settings(settings)
    from api.storage.local import LocalFileStore

    return LocalFileStore(
        settings.storage_dir,
        public_base_url=settings.public_base_url,
        signing_key=settings.media_signing_key.get_secret_value(),
    )
