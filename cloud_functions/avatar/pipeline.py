"""Orchestration: decode -> detect -> mask -> compose -> store, with per-stage timings.

Backends are passed in (see avatar.backends.build_backends); nothing here picks an adapter.
Face coordinates in the answer are pixels of the stored image (the upright working image).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PIL import Image

from avatar.backends import Backends
from avatar.config import Settings
from avatar.errors import ImageTooLarge, NoFaceDetected
from avatar.imaging import Decoded, decode, encode
from avatar.inputs import AvatarRequest

STAGES = ("decode", "detect", "segment", "compose", "store")


class Timings:
    """Milliseconds spent per stage, measured with a monotonic clock."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.ms: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] += (time.perf_counter() - start) * 1000

    def as_json(self) -> dict[str, float]:
        """The stages and the total, rounded to 0.1 ms."""
        total = (time.perf_counter() - self.started) * 1000
        return {name: round(ms, 1) for name, ms in {**self.ms, "total": total}.items()}


def generate_avatar(job: AvatarRequest, backends: Backends, settings: Settings) -> dict[str, Any]:
    """Run the whole pipeline for one request; returns the SPEC's 200 body."""
    timings = Timings()
    with timings.stage("decode"):
        decoded = load_image(job, backends, settings)
    rgb = decoded.image.convert("RGB") if decoded.has_alpha else decoded.image
    with timings.stage("detect"):
        faces = sorted(backends.detector.detect(rgb), key=lambda f: f.box.area, reverse=True)
    if not faces:
        raise NoFaceDetected("no face found in the image")
    chosen = faces if job.all_faces else faces[:1]
    with timings.stage("segment"):
        masks = [backends.masker.face_mask(rgb, face) for face in chosen]
    with timings.stage("compose"):
        result = restore_alpha(backends.compositor.compose(rgb, chosen, masks, job.animal), decoded)
    with timings.stage("store"):
        object_name, url = store_result(result, job, backends, settings)
    return {
        "image_url": url,
        "object_name": object_name,
        "animal": job.animal,
        "width": result.width,  # the stored image's size: the frame of the face coordinates
        "height": result.height,
        "faces": [face.to_json() for face in faces],
        "backend": backend_label(backends),
        "timings_ms": timings.as_json(),
    }


def load_image(job: AvatarRequest, backends: Backends, settings: Settings) -> Decoded:
    """The request's image (inline, or fetched from the store) decoded at working size."""
    data = job.image if job.image is not None else backends.store.get(job.gcs_uri or "")
    if len(data) > settings.max_request_bytes:  # a stored input obeys the upload limit too
        raise ImageTooLarge(f"the image is over the limit of {settings.max_request_bytes} bytes")
    return decode(data, max_pixels=settings.max_pixels, working_size_px=settings.working_size_px)


def restore_alpha(composed: Image.Image, decoded: Decoded) -> Image.Image:
    """Put the input's transparency and colour profile back (compositors work in plain RGB)."""
    out = composed
    if decoded.has_alpha:
        out = composed.convert("RGBA")
        out.putalpha(decoded.image.getchannel("A"))
    out.info = dict(decoded.image.info)  # only the ICC profile survives decoding
    return out


def store_result(
    image: Image.Image, job: AvatarRequest, backends: Backends, settings: Settings
) -> tuple[str, str]:
    """Encode (JPEG, or PNG with alpha; no EXIF), store, and sign a URL to the object."""
    data, extension, content_type = encode(image)
    object_name = result_name(job.user_id, job.generation_id, extension)
    backends.store.put(object_name, data, content_type)
    return object_name, backends.store.signed_url(object_name, settings.signed_url_ttl_s)


def result_name(user_id: str, generation_id: str, extension: str) -> str:
    """Where a result is stored: the API finds a user's and a generation's images by these
    prefixes (`avatars/{user_id}/`, `avatars/{user_id}/{generation_id}.`; tests/contract)."""
    return f"avatars/{user_id}/{generation_id}.{extension}"


def backend_label(backends: Backends) -> str:
    """ "local" or "gcp" when detector and compositor agree, else "detector+compositor"."""
    detector, compositor = backends.detector.name, backends.compositor.name
    return detector if detector == compositor else f"{detector}+{compositor}"
