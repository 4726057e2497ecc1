"""Orchestration: decode -> detect -> mask, once; then compose -> store for each animal.

Backends are passed in (see avatar.backends.build_backends); nothing here picks an adapter.
Face coordinates in the answer are pixels of the stored image (the upright working image).
A pack (the `animals` form) shares the found faces and masks; each animal is composed, stored
and signed on its own (concurrently as far as the compositor allows), and an AvatarError there
fails only that animal's result.

The caller's deadline (`AvatarRequest.deadline`, from X-Request-Deadline) is checked before the
work starts, before each compose and before each store: once it has passed, DeadlinePassed
(504 upstream_timeout) fails the whole request, a pack included, and nothing more is stored,
since the caller is gone. A pack's animals stored before it stay; the caller removes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image

from avatar import logs
from avatar.backends import Backends
from avatar.config import Settings
from avatar.errors import AvatarError, DeadlinePassed, ImageTooLarge, NoFaceDetected
from avatar.faces import Face
from avatar.imaging import Decoded, decode, encode
from avatar.inputs import AvatarRequest

STAGES = ("decode", "detect", "segment", "compose", "store")
PER_ANIMAL_STAGES = ("compose", "store")
Clock = Callable[[], float]  # Unix time in seconds, as the caller's deadline is given


class Timings:
    """Milliseconds spent per stage, measured with a monotonic clock."""

    def __init__(self, stages: Sequence[str] = STAGES) -> None:
        self.started = time.perf_counter()
        self.ms: dict[str, float] = dict.fromkeys(stages, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] += (time.perf_counter() - start) * 1000

    def add(self, ms: Mapping[str, float]) -> None:
        """Add time measured elsewhere (a pack's animals) to the stages it names."""
        for name, value in ms.items():
            self.ms[name] += value

    def stages_json(self) -> dict[str, float]:
        """The stages, rounded to 0.1 ms."""
        return {name: round(ms, 1) for name, ms in self.ms.items()}

    def as_json(self) -> dict[str, float]:
        """The stages and the total (wall time since the start), rounded to 0.1 ms."""
        total = (time.perf_counter() - self.started) * 1000
        return {**self.stages_json(), "total": round(total, 1)}


@dataclass(frozen=True)
class Scene:
    """What every animal of a request is drawn from: found once per request."""

    decoded: Decoded
    rgb: Image.Image  # the working image without alpha, as detectors and compositors take it
    faces: list[Face]  # every face found, largest first
    chosen: list[Face]  # the faces to turn into the animal
    masks: list[Image.Image]  # one per chosen face


def generate_avatar(
    job: AvatarRequest, backends: Backends, settings: Settings, clock: Clock = time.time
) -> dict[str, Any]:
    """Run the whole pipeline for one request; returns the SPEC's 200 body (one or a pack).

    `clock` tells the time the caller's deadline is checked against (tests pass their own).
    """
    timings = Timings()
    check_deadline(job.deadline, clock())  # the caller may be gone already: spare the models
    scene = find_faces(job, backends, settings, timings)
    renderer = Renderer(scene, job, backends, settings, clock)
    if job.several:
        results = renderer.results()
        for result in results:  # the pack's compose and store: summed over its animals
            timings.add(result["timings_ms"])
        return {"results": results, **renderer.shared_json(), "timings_ms": timings.as_json()}
    object_name, url = renderer.render(job.targets[0], timings)
    return {
        "image_url": url,
        "object_name": object_name,
        "animal": job.animal,
        **renderer.shared_json(),
        "timings_ms": timings.as_json(),
    }


def find_faces(
    job: AvatarRequest, backends: Backends, settings: Settings, timings: Timings
) -> Scene:
    """Decode, detect and mask: NoFaceDetected (and the stages' own errors) fail the request."""
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
    return Scene(decoded, rgb, faces, chosen, masks)


@dataclass(frozen=True)
class Renderer:
    """Draws the request's animals over its scene and stores each as its own generation."""

    scene: Scene
    job: AvatarRequest
    backends: Backends
    settings: Settings
    clock: Clock = time.time

    def render(self, target: tuple[str, str], timings: Timings) -> tuple[str, str]:
        """Compose (animal, generation_id), store it, sign a URL: (object_name, url).

        The caller's deadline is checked before composing and, in store_result, before the
        write: no work is done for, and nothing stored after, a caller that is gone.
        """
        animal, generation_id = target
        job = self.job
        check_deadline(job.deadline, self.clock())
        with timings.stage("compose"):
            result = self.draw(animal)
        with timings.stage("store"):
            return store_result(
                result, job.user_id, generation_id, self.backends, self.settings,
                deadline=job.deadline, clock=self.clock,
            )  # fmt: skip

    def draw(self, animal: str) -> Image.Image:
        """The scene with its chosen faces turned into `animal`, drawn in the request's style
        (the input's alpha restored)."""
        scene, compositor = self.scene, self.backends.compositor
        composed = compositor.compose(
            scene.rgb, scene.chosen, scene.masks, animal, style=self.job.style
        )
        return restore_alpha(composed, scene.decoded)

    def results(self) -> list[dict[str, Any]]:
        """Every animal's result in request order, on as many threads as the compositor allows.

        Workers hand back only strings and timings: no image outlives its own thread.
        """
        targets = self.job.targets
        limit = self.backends.compositor.concurrent_animals
        workers = len(targets) if limit is None else min(limit, len(targets))
        if workers <= 1:
            return [self.result(target) for target in targets]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="animal") as pool:
            # Each animal's thread logs under the request's trace.
            return list(pool.map(logs.traced(self.result), targets))

    def result(self, target: tuple[str, str]) -> dict[str, Any]:
        """One animal of a pack, stored and signed, or the AvatarError that failed (only) it.

        A passed deadline is no animal's failure: it fails the request (the caller is gone).
        """
        timings = Timings(PER_ANIMAL_STAGES)
        outcome: dict[str, str | None]
        try:
            object_name, url = self.render(target, timings)
        except DeadlinePassed:
            raise
        except AvatarError as exc:  # anything else is a bug, and fails the request
            outcome = {"image_url": None, "object_name": None, "error": exc.code,
                       "detail": exc.detail}  # fmt: skip
        else:
            outcome = {"image_url": url, "object_name": object_name, "error": None, "detail": None}
        animal, generation_id = target
        return {"animal": animal, "generation_id": generation_id, **outcome,
                "timings_ms": timings.stages_json()}  # fmt: skip

    def shared_json(self) -> dict[str, Any]:
        """The answer's fields all results share: the stored image's size, faces, backend."""
        width, height = self.scene.decoded.image.size  # the frame of the face coordinates
        return {
            "width": width,
            "height": height,
            "faces": [face.to_json() for face in self.scene.faces],
            "backend": backend_label(self.backends),
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
    image: Image.Image,
    user_id: str,
    generation_id: str,
    backends: Backends,
    settings: Settings,
    *,
    deadline: float | None = None,
    clock: Clock = time.time,
) -> tuple[str, str]:
    """Encode (JPEG, or PNG with alpha; no EXIF), store, and sign a URL to the object.

    The store creates the object once (a name taken by other bytes is Conflict). Nothing is
    written once the caller's `deadline` has passed (checked last thing before the write); the
    store bounds a slow write by it too.
    """
    data, extension, content_type = encode(image)
    object_name = result_name(user_id, generation_id, extension)
    check_deadline(deadline, clock())
    backends.store.put(object_name, data, content_type, deadline=deadline)
    return object_name, backends.store.signed_url(object_name, settings.signed_url_ttl_s)


def check_deadline(deadline: float | None, now: float) -> None:
    """DeadlinePassed once `now` is past the caller's deadline (Unix time; None: no deadline)."""
    if deadline is not None and now > deadline:
        raise DeadlinePassed(
            "the caller's deadline passed before the result was stored; nothing was stored"
        )


def result_name(user_id: str, generation_id: str, extension: str) -> str:
    """Where a result is stored: the API finds a user's and a generation's images by these
    prefixes (`avatars/{user_id}/`, `avatars/{user_id}/{generation_id}.`; tests/contract)."""
    return f"avatars/{user_id}/{generation_id}.{extension}"


def backend_label(backends: Backends) -> str:
    """ "local" or "gcp" when detector and compositor agree, else "detector+compositor"."""
    detector, compositor = backends.detector.name, backends.compositor.name
    return detector if detector == compositor else f"{detector}+{compositor}"
