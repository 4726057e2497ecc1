"""A generation's life has one home: api.generations.lifecycle owns every status write, and its
guards keep a finished record finished whoever else is working on it."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from api_testing import add_generation, create_user, put_object
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import REPO_ROOT
from api.errors import UpstreamTimeout
from api.forwarding.client import FunctionRequest, FunctionResult, Stored, Target
from api.generations import lifecycle
from api.generations.models import Generation, GenerationInput, GenerationStatus
from api.generations.runner import GenerationRunner, Job, Work
from api.storage.local import LocalFileStore

PENDING, PROCESSING = GenerationStatus.pending, GenerationStatus.processing
SUCCEEDED, FAILED = GenerationStatus.succeeded, GenerationStatus.failed


def test_the_state_machine_is_the_specs() -> None:
    moves = {
        (source.value, transition.target.value)
        for transition in lifecycle.TRANSITIONS.values()
        for source in transition.sources
    }
    assert moves == {
        ("pending", "processing"),  # claim
        ("processing", "processing"),  # recovery claims stalled work
        ("processing", "succeeded"),
        ("pending", "failed"),
        ("processing", "failed"),
        ("processing", "pending"),  # released at shutdown
        ("failed", "pending"),  # an Idempotency-Key retry after an outage (async)
        ("failed", "processing"),  # (sync)
        ("failed", "succeeded"),  # a batch job's failed result, redone (--retry-failed)
    }
    assert not any(t.sources for t in lifecycle.TRANSITIONS.values() if SUCCEEDED in t.sources)


# A status written anywhere but lifecycle.py: an update of the generations table, or a status
# value set on a record.
STATUS_WRITE = re.compile(
    r"update\(\s*(Generation\b|GENERATIONS)|\.status\s*=(?!=)|[\"']status[\"']\s*:\s*GenerationStatus"
)


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for folder in ("api", "batch")
        for p in (REPO_ROOT / folder).rglob("*.py")
        if p.name != "lifecycle.py"
    ),
    ids=lambda p: str(p.relative_to(REPO_ROOT)),
)
def test_no_other_module_writes_a_status(path: Path) -> None:
    assert not STATUS_WRITE.search(path.read_text()), path


@pytest.fixture
async def user_id(client) -> uuid.UUID:
    user, _ = await create_user(client)
    return uuid.UUID(user["id"])


async def record(db: AsyncSession, user_id: uuid.UUID, status: GenerationStatus, **fields: Any):
    return await add_generation(db, user_id, status=status, **fields)


async def fresh(db: AsyncSession, generation: Generation) -> Generation:
    found = await db.get(Generation, generation.id, populate_existing=True)
    assert found is not None
    return found


RESULT = {"object_name": "avatars/u/g.png", "faces": [], "timings_ms": {}}


async def test_a_finished_record_stays_finished(db, user_id) -> None:
    done = await record(db, user_id, SUCCEEDED, object_name="avatars/u/g.png")
    final = await lifecycle.fail(db, done.id, "upstream_timeout", "late")
    assert (final.written, final.status, final.keeps_objects) == (False, SUCCEEDED, True)
    failed = await record(db, user_id, FAILED, error_code="no_face_detected")
    final = await lifecycle.succeed(db, failed.id, **RESULT)
    assert (final.written, final.status, final.keeps_objects) == (False, FAILED, False)
    await db.commit()
    assert (await fresh(db, done)).status is SUCCEEDED
    assert (await fresh(db, failed)).error_code == "no_face_detected"


async def test_a_gone_record_says_so(db) -> None:
    final = await lifecycle.succeed(db, uuid.uuid4(), **RESULT)
    assert (final.written, final.status, final.keeps_objects) == (False, None, False)


async def test_succeed_needs_a_claim_and_drops_the_kept_upload(db, user_id) -> None:
    pending = await record(db, user_id, PENDING)
    db.add(GenerationInput(generation_id=pending.id, image=b"selfie", content_type="image/jpeg"))
    await db.commit()
    assert not (await lifecycle.succeed(db, pending.id, **RESULT)).written
    assert not await lifecycle.claim(db, pending.id, seen_attempts=5)  # a stale sighting
    assert await lifecycle.claim(db, pending.id, seen_attempts=0)
    assert not await lifecycle.claim(db, pending.id, seen_attempts=0)  # one claim per sighting
    final = await lifecycle.succeed(db, pending.id, **RESULT)
    await db.commit()
    assert (final.written, final.status) == (True, SUCCEEDED)
    assert await db.get(GenerationInput, pending.id) is None
    done = await fresh(db, pending)
    assert (done.status, done.attempts, done.object_name) == (SUCCEEDED, 1, "avatars/u/g.png")
    assert done.completed_at is not None


async def test_release_and_retry_move_only_from_their_states(db, user_id) -> None:
    pending = await record(db, user_id, PENDING)
    assert not await lifecycle.release(db, pending.id)
    working = await record(db, user_id, PROCESSING, attempts=1)
    assert await lifecycle.release(db, working.id)
    refused = await record(db, user_id, FAILED, error_code="no_face_detected")
    assert await lifecycle.retry(db, refused.id, None, claimed=True, seen_run=0) is None
    outage = await record(db, user_id, FAILED, error_code="upstream_unavailable")
    stored = lifecycle.StoredInput(b"selfie", "image/jpeg")
    assert await lifecycle.retry(db, outage.id, stored, claimed=False, seen_run=3) is None
    values = await lifecycle.retry(db, outage.id, stored, claimed=False, seen_run=0)
    assert values is not None
    assert values["run"] == 1  # the next run: the work queue names it anew
    # One wins (the same sighting, or the record's new run: it is no longer failed).
    assert await lifecycle.retry(db, outage.id, stored, claimed=False, seen_run=0) is None
    assert await lifecycle.retry(db, outage.id, stored, claimed=False, seen_run=1) is None
    await db.commit()
    assert (await fresh(db, working)).status is PENDING
    again = await fresh(db, outage)
    assert (again.status, again.attempts, again.run, again.error_code) == (PENDING, 0, 1, None)
    assert (await db.get(GenerationInput, outage.id)) is not None


class FailingForwarder:
    """A function that times out: this worker's attempt fails."""

    async def generate(self, request: FunctionRequest) -> FunctionResult:
        raise UpstreamTimeout("too slow")

    async def aclose(self) -> None:
        return None


class SucceedingForwarder:
    """A function that answers late, after the record was finished by someone else."""

    async def generate(self, request: FunctionRequest) -> FunctionResult:
        generation_id = request.targets[0].generation_id
        name = f"avatars/{request.user_id}/{generation_id}.jpg"
        return FunctionResult(faces=[], outcomes={generation_id: Stored(name)})

    async def aclose(self) -> None:
        return None


def runner(sessionmaker, forwarder, store) -> GenerationRunner:
    return GenerationRunner(
        sessionmaker, forwarder, store, max_concurrency=4, stale_after_s=120, late_write_s=30
    )


def work_on(generation: Generation) -> Work:
    target = Target(generation.id, "cat")
    request = FunctionRequest(b"", "image/jpeg", generation.user_id, (target,), "character")
    return Work(request, kept_input=False)


async def test_a_second_workers_failure_keeps_the_first_workers_image(
    db, sessionmaker, user_id, tmp_path
) -> None:
    store = LocalFileStore(tmp_path, public_base_url="http://x", signing_key="k")
    done = await record(db, user_id, SUCCEEDED)
    name = f"avatars/{user_id}/{done.id}.jpg"
    put_object(store, name, b"the avatar")
    await runner(sessionmaker, FailingForwarder(), store)._attempt(
        Job.of_generation(done.id, 1), work_on(done)
    )
    assert (tmp_path / name).read_bytes() == b"the avatar"
    assert (await fresh(db, done)).status is SUCCEEDED


async def test_a_late_success_on_a_failed_record_leaves_no_image(
    db, sessionmaker, user_id, tmp_path
) -> None:
    store = LocalFileStore(tmp_path, public_base_url="http://x", signing_key="k")
    failed = await record(db, user_id, FAILED, error_code="upstream_timeout")
    name = f"avatars/{user_id}/{failed.id}.jpg"
    put_object(store, name, b"stored after the API gave up")
    outcome = await runner(sessionmaker, SucceedingForwarder(), store)._attempt(
        Job.of_generation(failed.id, 1), work_on(failed)
    )
    assert outcome is None
    assert not (tmp_path / name).exists()
    assert (await fresh(db, failed)).status is FAILED
