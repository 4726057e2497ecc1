"""/media/{object_name}: stored images of the local file store, behind signed, expiring links."""

from __future__ import annotations

import mimetypes
import time
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import SettingsDep, StorageDep
from api.errors import Forbidden
from api.security import media_signature_valid

router = APIRouter(tags=["media"])


@router.get("/media/{object_name:path}", include_in_schema=False)
async def read_media(
    object_name: str,
    settings: SettingsDep,
    store: StorageDep,
    expires: Annotated[int | None, Query()] = None,
    signature: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """A stored image, if the link's signature is valid and not expired."""
    key = settings.media_signing_key.get_secret_value()
    if (
        expires is None
        or signature is None
        or not media_signature_valid(key, object_name, expires, signature, now=time.time())
    ):
        raise Forbidden("the link is invalid or has expired")
    data = await store.read(object_name)
    content_type = mimetypes.guess_type(object_name)[0] or "application/octet-stream"
    return Response(data, media_type=content_type, headers={"Cache-Control": "private"})
