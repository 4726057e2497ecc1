"""Ports of the pipeline: one Protocol per stage, a `local` and a `gcp` adapter for each.

`build_backends` is the one place that chooses adapters; the `gcp` modules are imported only
when selected, so the local path never pays for the Google client libraries.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from avatar.catalogue import DEFAULT_STYLE

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
    """Turns each given face into the animal; pixels outside the masks stay unchanged.

    `style` (one of avatar.catalogue.RENDER_STYLES) is how to draw it: the local compositor
    draws that style; the gcp one ignores it (its model draws the animal its own way).
    `concurrent_animals`: how many animals of a pack the pipeline composes at once; None for
    all of them (the compositor waits on the network), 1 for one after another.
    """

    name: str
    concurrent_animals: int | None

    def compose(
        self,
        image: Image.Image,
        faces: Sequence[Face],
        masks: Sequence[Image.Image],
        animal: str,
        style: str = DEFAULT_STYLE,
    ) -> Image.Image: ...


class ObjectStore(Protocol):
    """Where results are written and inputs by reference (`gcs_uri`) are read.

    `put` creates an object once and never replaces it: the same bytes again are a retried
    write and succeed, other bytes raise Conflict. `deadline` is the caller's (Unix time): a
    store whose writes can take long bounds them by it.
    """

    name: str

    def put(
        self, name: str, data: bytes, content_type: str, *, deadline: float | None = None
    ) -> None: ...

    def get(self, uri: str) -> bytes: ...

    def signed_url(self, name: str, ttl_s: int) -> str: ...


@dataclass(frozen=True)
class Backends:
    detector: FaceDetector
    masker: FaceMasker
    compositor: Compositor
    store: ObjectStore


@cache
def build_backends(settings: Settings) -> Backends:
    """The one place adapters are chosen; built once per process per settings."""
    detector, masker = _detector_and_masker(settings)
    return Backends(detector, masker, _compositor(settings), _store(settings))


def _detector_and_masker(settings: Settings) -> tuple[FaceDetector, FaceMasker]:
    if settings.detector == "gcp":
        vision = importlib.import_module("avatar.backends.gcp.vision")
        from avatar.masking import ContourMasker

        detector: FaceDetector = vision.VisionDetector.from_settings(settings)
        return detector, ContourMasker()
    from avatar.backends.local.detector import LocalDetector
    from avatar.backends.local.runtime import ModelRunner
    from avatar.backends.local.segmenter import SegmentationMasker

    runner = ModelRunner(settings.model_dir)  # shared: it keeps one interpreter set per thread
    return LocalDetector(runner), SegmentationMasker(runner)


def _local_compositor() -> Compositor:
    module = importlib.import_module("avatar.backends.local.compositor")
    compositor: Compositor = module.LocalCompositor()
    return compositor


def _compositor(settings: Settings) -> Compositor:
    if settings.compositor == "local":
        return _local_compositor()
    vertex = importlib.import_module("avatar.backends.gcp.vertex")
    fallback = _local_compositor() if settings.compose_fallback == "local" else None
    compositor: Compositor = vertex.VertexCompositor.from_settings(settings, fallback=fallback)
    return compositor


def _store(settings: Settings) -> ObjectStore:
    if settings.store == "gcs":
        storage = importlib.import_module("avatar.backends.gcp.storage")
        gcs: ObjectStore = storage.GcsStore.from_settings(settings)
        return gcs
    from avatar.backends.local.store import LocalFileStore

    key = settings.media_signing_key.get_secret_value().encode()
    return LocalFileStore(
        settings.storage_dir, settings.media_base_url, key, bucket=settings.gcs_bucket
    )
