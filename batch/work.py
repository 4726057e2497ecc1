"""A unit of the job's work: one input with the animals it still needs, and what came of each.

Both workers (the pipeline in-process, `batch.inprocess`; a deployed function,
`batch.remote`) take a Task and give back one Result per animal, having written the images to
OUTPUT already. The main process alone writes the manifest and the history.
"""

from __future__ import annotations

import sys
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from avatar.catalogue import DEFAULT_STYLE
from batch.errors import BatchError
from batch.locations import Item, Location

# Result names in a user's history are derived from the output they were written to, so a
# rerun of the same job (a crash between the history and the manifest) names the same record.
GENERATION_NAMESPACE = uuid.UUID("5f0c6a52-6f6e-4a6b-9a52-6261746368aa")
INTERNAL_ERROR = "internal_error"
# How to call a deployed function (--function-auth): a Google ID token, nothing, or a token for
# https URLs only.
Auth = Literal["auto", "none", "id_token"]


@dataclass(frozen=True)
class Spec:
    """What every worker needs to know about the job (sent once to each worker process)."""

    input: Location
    output: Location
    all_faces: bool = False
    user_id: uuid.UUID | None = None
    style: str = DEFAULT_STYLE  # how every animal is drawn (avatar.catalogue.RENDER_STYLES)

    def generation_id(self, item: Item, animal: str) -> str | None:
        """The history record a result is, when the job records one (`--user-id`)."""
        if self.user_id is None:
            return None
        seed = f"{self.user_id}\n{self.output.join(item.name)}\n{animal}"
        return str(uuid.uuid5(GENERATION_NAMESPACE, seed))

    @property
    def owner(self) -> str:
        """The `user_id` the function names stored objects with."""
        return str(self.user_id) if self.user_id is not None else "batch"


@dataclass(frozen=True)
class Task:
    item: Item
    animals: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    """One animal of one input: the image written (`output`, relative to OUTPUT) or the error."""

    animal: str
    output: str | None = None
    error: tuple[str, str] | None = None  # (code, detail), the function's codes
    faces: list[dict[str, Any]] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    generation_id: str | None = None
    object_name: str | None = None  # the copy in the function's store, when recorded

    @property
    def succeeded(self) -> bool:
        return self.error is None


def output_name(item: Item, animal: str, extension: str) -> str:
    """Where a result goes in OUTPUT: the input's name, the animal and the image type
    (`a/b.jpg` -> `a/b.jpg.fox.jpg`), so no two inputs or animals ever share a name."""
    return f"{item.name}.{animal}.{extension}"


def failed(
    task: Task,
    spec: Spec,
    code: str,
    detail: str,
    *,
    faces: list[dict[str, Any]] | None = None,
    timings_ms: dict[str, float] | None = None,
) -> list[Result]:
    """Every animal of the task failed with one error (the input itself was the problem)."""
    return [
        Result(
            animal,
            error=(code, detail),
            faces=faces,
            timings_ms=dict(timings_ms or {}),
            generation_id=spec.generation_id(task.item, animal),
        )
        for animal in task.animals
    ]


def attempt(work: Callable[[Task], list[Result]], task: Task, spec: Spec) -> list[Result]:
    """Run a worker on a task; a bug on one input fails that input, not the job.

    BatchError (the job cannot go on) is not caught: it stops the job.
    """
    try:
        return work(task)
    except BatchError:
        raise
    except Exception:
        # The traceback names the code; the image itself is never logged.
        print(f"batch: {task.item.name} failed unexpectedly:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return failed(task, spec, INTERNAL_ERROR, "internal error; the job's log has the cause")
