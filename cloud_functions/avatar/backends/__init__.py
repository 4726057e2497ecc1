"""Ports of the pipeline: one Protocol per stage, a `local` and a `gcp` adapter for each.

`build_backends` is the one place that chooses adapters; the `gcp` modules are imported only
when selected, so the local path never pays for the Google client libraries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from PIL import Image

if TYPE_CHECKING:
    from avatar.config import Settings
    from avatar.faces import Face


class FaceDetector(Protocol):
    """Finds faces in an RGB image; may raise ContentBlocked or Upstream* errors."""

    name: str

    def detect(self, image: Image.Image) -> list[Face]: ...


class FaceMasker(Protocol):
    """A feathered face mask: mode "L", the image's size, 255 inside the face."""

    def face_mask(self, image: Image.Image, face: Face) -> Image.Image: ...


class Compositor(Protocol):
    """Turns each given face into the animal; pixels outside the masks stay unchanged."""

    name: str

    def compose(
        self,
        image: Image.Image,
        faces: Sequence[Face],
        masks: Sequence[Image.Image],
        animal: str,
    ) -> Image.Image: ...


class ObjectStore(Protocol):
    """Where results are written and inputs by reference (`gcs_uri`) are read."""

    name: str

    def put(self, name: str, data: bytes, content_type: str) -> None: ...

    def get(self, uri: str) -> bytes: ...

    def signed_url(self, name: str, ttl_s: int) -> str: ...


@dataclass(frozen=True)
class Backends:
    detector: FaceDetector
    masker: FaceMasker
    compositor: Compositor
    store: ObjectStore
