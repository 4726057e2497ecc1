"""The function's own pipeline in this process: decode, detect and mask once per input, then
compose and encode each animal, and write it to OUTPUT (and, with `--user-id`, to the
function's store under the name the API reads it by).

One PipelineWorker per process; its backends (the local models) are made once, when it starts.
"""

from __future__ import annotations

import secrets
import signal
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from avatar.backends import Backends, build_backends
from avatar.config import Settings
from avatar.errors import AvatarError, ImageTooLarge, NoFaceDetected
from avatar.imaging import encode
from avatar.inputs import AvatarRequest
from avatar.pipeline import PER_ANIMAL_STAGES, Renderer, Timings, find_faces, result_name
from batch.work import Result, Spec, Task, attempt, failed, output_name

# The batch job signs no links (the API signs a recorded result's link when it is read), so
# its store gets a throwaway signing key, one per process (the backends are cached by settings),
# and no media key needs configuring for the job.
THROWAWAY_SIGNING_KEY = SecretStr(secrets.token_hex(32))


def function_settings() -> Settings:
    """The function's settings from the environment, as the function reads them."""
    return Settings(media_signing_key=THROWAWAY_SIGNING_KEY)


class PipelineWorker:
    """Runs tasks through the pipeline with backends made once, at construction."""

    def __init__(self, spec: Spec, settings: Settings | None = None) -> None:
        self.spec = spec
        self.settings = settings or function_settings()
        self.backends: Backends = build_backends(self.settings)

    def __call__(self, task: Task) -> list[Result]:
        spec, settings, item = self.spec, self.settings, task.item
        timings = Timings()
        if item.size > settings.max_request_bytes:  # not even read
            limit = f"the image is over the limit of {settings.max_request_bytes} bytes"
            return failed(task, spec, ImageTooLarge.code, limit)
        try:
            data = spec.input.read(item.name)
        except FileNotFoundError:
            return failed(task, spec, "not_found", f"{spec.input.join(item.name)} is gone")
        request = AvatarRequest(
            animal=task.animals[0],
            user_id=spec.owner,
            generation_id="batch",
            all_faces=spec.all_faces,
            image=data,
            style=spec.style,
        )
        try:
            scene = find_faces(request, self.backends, settings, timings)
        except AvatarError as exc:
            faces: list[dict[str, Any]] | None = [] if isinstance(exc, NoFaceDetected) else None
            ran = timings.as_json()
            return failed(task, spec, exc.code, exc.detail, faces=faces, timings_ms=ran)
        renderer = Renderer(scene, request, self.backends, settings)
        found = Found(renderer, renderer.shared_json()["faces"], timings.stages_json())
        return [self.result(task, found, animal) for animal in task.animals]

    def result(self, task: Task, found: Found, animal: str) -> Result:
        """One animal: compose, encode, write; an AvatarError fails only this animal."""
        spec, faces = self.spec, found.faces
        timings = Timings(PER_ANIMAL_STAGES)
        generation_id = spec.generation_id(task.item, animal)
        try:
            with timings.stage("compose"):
                image = found.renderer.draw(animal)
            with timings.stage("store"):
                data, extension, content_type = encode(image)
                name = output_name(task.item, animal, extension)
                spec.output.write(name, data, content_type)
                object_name = None
                if generation_id is not None:  # the user's copy, where the API finds it
                    object_name = result_name(spec.owner, generation_id, extension)
                    self.backends.store.put(object_name, data, content_type)
        except AvatarError as exc:
            return Result(
                animal,
                error=(exc.code, exc.detail),
                faces=faces,
                timings_ms=found.with_stages(timings),
                generation_id=generation_id,
            )
        return Result(
            animal,
            output=name,
            faces=faces,
            timings_ms=found.with_stages(timings),
            generation_id=generation_id,
            object_name=object_name,
        )


@dataclass(frozen=True)
class Found:
    """What an input's animals share: the scene to draw on, its faces as the function answers
    them, and the milliseconds of the stages that found them (decode, detect, segment)."""

    renderer: Renderer
    faces: list[dict[str, Any]]
    shared_ms: dict[str, float]

    def with_stages(self, own: Timings) -> dict[str, float]:
        """The shared stages, this animal's (compose, store), and their sum."""
        ms = {**self.shared_ms, **own.stages_json()}
        return {**ms, "total": round(sum(ms.values()), 1)}


# --- in a worker process ------------------------------------------------------------------------

_worker: PipelineWorker | None = None


def start_worker(spec: Spec) -> None:
    """A worker process's initializer: load the models once; Ctrl-C is the main process's to
    handle (a terminal sends it to every process of the group)."""
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker = PipelineWorker(spec)


def run_in_worker(task: Task) -> list[Result]:
    """A task in a worker process (made by start_worker)."""
    assert _worker is not None, "start_worker runs first"
    return attempt(_worker, task, _worker.spec)
