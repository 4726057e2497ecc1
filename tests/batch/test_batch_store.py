"""The in-process worker's copies in the function's store (`--user-id`): the store is
create-only, so a rerun writes the same bytes again and succeeds, and a name taken by other
bytes fails that animal alone."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from avatar.pipeline import result_name
from batch.inprocess import PipelineWorker
from batch.locations import Item, location
from batch.work import Result, Spec, Task


@pytest.fixture
def spec(inputs: Path, tmp_path: Path) -> Spec:
    return Spec(location(str(inputs)), location(str(tmp_path / "out")), user_id=uuid.uuid4())


def task(inputs: Path, *animals: str) -> Task:
    return Task(Item("astronaut.jpg", (inputs / "astronaut.jpg").stat().st_size), animals)


def stored(store: Path, result: Result) -> Path:
    assert result.object_name is not None, result.error
    return store / result.object_name


def test_a_rerun_stores_the_same_bytes_and_succeeds(
    spec: Spec, inputs: Path, function_env: Path
) -> None:
    worker = PipelineWorker(spec)
    first = worker(task(inputs, "fox", "panda"))
    written = {r.animal: stored(function_env, r).read_bytes() for r in first}

    again = worker(task(inputs, "fox", "panda"))  # a crash before the manifest line, say

    assert all(r.succeeded for r in again), [r.error for r in again]
    assert {r.animal: stored(function_env, r).read_bytes() for r in again} == written


def test_a_name_taken_by_other_bytes_fails_only_that_animal(
    spec: Spec, inputs: Path, function_env: Path
) -> None:
    item = task(inputs, "fox", "panda").item
    generation_id = spec.generation_id(item, "panda")
    assert generation_id is not None
    taken = function_env / result_name(spec.owner, generation_id, "jpg")
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's image")

    fox, panda = PipelineWorker(spec)(task(inputs, "fox", "panda"))

    assert fox.succeeded
    assert stored(function_env, fox).is_file()
    assert panda.error is not None
    assert panda.error[0] == "conflict"
    assert taken.read_bytes() == b"someone else's image"
