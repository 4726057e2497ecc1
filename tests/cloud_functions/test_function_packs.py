"""The `animals` form (a pack), local backends: one selfie, several animals, the face found once."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from function_testing import encode, post_json
from PIL import Image

from avatar.backends.local.compositor import LocalCompositor
from avatar.backends.local.detector import LocalDetector
from avatar.backends.local.segmenter import SegmentationMasker
from avatar.catalogue import ANIMAL_IDS, ANIMALS
from avatar.errors import ContentBlocked

EVERY_ANIMAL = [animal.id for animal in ANIMALS]
CHOICES = ", ".join(sorted(ANIMAL_IDS))
RESULT_FIELDS = {
    "animal", "generation_id", "image_url", "object_name", "error", "detail", "timings_ms",
}  # fmt: skip
PACK_FIELDS = {"results", "faces", "width", "height", "backend", "timings_ms"}


def stored_digest(storage_dir: Path, object_name: str) -> str:
    return hashlib.sha256((storage_dir / object_name).read_bytes()).hexdigest()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the local detector and masker run (counted around the real methods)."""
    counts = {"detect": 0, "face_mask": 0}

    def counting(cls: type, method: str) -> None:
        real = getattr(cls, method)

        def wrapper(self: Any, *args: Any) -> Any:
            counts[method] += 1
            return real(self, *args)

        monkeypatch.setattr(cls, method, wrapper)

    counting(LocalDetector, "detect")
    counting(SegmentationMasker, "face_mask")
    return counts


def test_every_animal_in_one_call_finds_the_face_once(
    client: FlaskClient, astronaut_jpeg: bytes, storage_dir: Path, calls: dict[str, int]
) -> None:
    ids = [f"pack-{animal}" for animal in EVERY_ANIMAL]
    response = post_json(
        client, astronaut_jpeg, animals=EVERY_ANIMAL, generation_ids=ids, user_id="packer"
    )

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == PACK_FIELDS
    assert calls == {"detect": 1, "face_mask": 1}
    assert len(body["faces"]) == 1
    assert body["backend"] == "local"
    results = body["results"]
    assert [r["animal"] for r in results] == EVERY_ANIMAL
    assert [r["generation_id"] for r in results] == ids
    assert all(set(r) == RESULT_FIELDS for r in results)
    assert all(r["error"] is None and r["detail"] is None for r in results)
    names = [r["object_name"] for r in results]
    assert names == [f"avatars/packer/pack-{animal}.jpg" for animal in EVERY_ANIMAL]
    assert all(
        r["image_url"].startswith(f"http://media.test/media/{r['object_name']}?") for r in results
    )
    digests = {stored_digest(storage_dir, name) for name in names}
    assert len(digests) == len(EVERY_ANIMAL)  # every animal looks different


def test_a_pack_is_the_same_bytes_whatever_the_threads(
    client: FlaskClient,
    astronaut_jpeg: bytes,
    storage_dir: Path,
    spy: CompositorSpy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def pack(prefix: str) -> list[str]:
        ids = [f"{prefix}-{animal}" for animal in EVERY_ANIMAL]
        body = post_json(
            client, astronaut_jpeg, animals=EVERY_ANIMAL, generation_ids=ids
        ).get_json()
        return [stored_digest(storage_dir, r["object_name"]) for r in body["results"]]

    in_turn = pack("in-turn")
    assert spy.threads == {threading.current_thread().name}
    monkeypatch.setattr(LocalCompositor, "concurrent_animals", None)  # a thread per animal
    assert pack("threads") == in_turn
    assert len(spy.threads - {threading.current_thread().name}) > 1


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/", "json", {"animals": ["Fox", " cat "]}),
        ("/", "json", {"animals": "fox, CAT", "generation_ids": "g-fox,g-cat"}),
        ("/", "multipart", {"animals": "fox,cat"}),
        ("/", "multipart", {"animals": "fox,cat", "generation_ids": " g-fox , g-cat"}),
        ("/?animals=fox,cat", "raw", {}),
        ("/?animals=fox%2C%20cat&generation_ids=g-fox,g-cat", "raw", {}),
    ],
)
def test_every_way_of_naming_animals(
    client: FlaskClient, astronaut_jpeg: bytes, path: str, body: str, fields: dict[str, Any]
) -> None:
    if body == "json":
        response = post_json(client, astronaut_jpeg, **fields)
    elif body == "multipart":
        form = {"image": (io.BytesIO(astronaut_jpeg), "selfie.jpg"), **fields}
        response = client.post(path, data=form, content_type="multipart/form-data")
    else:
        response = client.post(path, data=astronaut_jpeg, content_type="image/jpeg")

    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [r["animal"] for r in results] == ["fox", "cat"]
    generation_ids = [r["generation_id"] for r in results]
    if "generation_ids" in path or "generation_ids" in fields:
        assert generation_ids == ["g-fox", "g-cat"]
    else:  # a fresh uuid4 hex each
        assert len(set(generation_ids)) == 2
        assert all(len(g) == 32 and int(g, 16) >= 0 for g in generation_ids)


def test_one_animal_in_the_animals_form_still_answers_a_list(
    client: FlaskClient, astronaut_jpeg: bytes
) -> None:
    response = post_json(client, astronaut_jpeg, animals=["panda"], generation_ids="solo")

    assert response.status_code == 200
    [result] = response.get_json()["results"]
    assert result["object_name"] == "avatars/anonymous/solo.jpg"


def test_the_single_animal_form_is_unchanged(client: FlaskClient, astronaut_jpeg: bytes) -> None:
    response = post_json(client, astronaut_jpeg, animal="fox", generation_id="single-1")

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {
        "image_url", "object_name", "animal", "width", "height", "faces", "backend", "timings_ms",
    }  # fmt: skip
    assert (body["animal"], body["object_name"]) == ("fox", "avatars/anonymous/single-1.jpg")
    assert set(body["timings_ms"]) == {"decode", "detect", "segment", "compose", "store", "total"}


def test_pack_timings_sum_the_animals(client: FlaskClient, astronaut_jpeg: bytes) -> None:
    body = post_json(client, astronaut_jpeg, animals=EVERY_ANIMAL[:4]).get_json()

    timings = body["timings_ms"]
    for stage in ("compose", "store"):
        per_animal = [r["timings_ms"][stage] for r in body["results"]]
        assert all(ms > 0 for ms in per_animal)
        assert timings[stage] == pytest.approx(sum(per_animal), abs=0.05)
    assert all(set(r["timings_ms"]) == {"compose", "store"} for r in body["results"])
    assert timings["total"] >= timings["decode"] + timings["detect"] + timings["segment"]
    assert timings["total"] >= timings["compose"] + timings["store"]  # one after another here


@dataclass
class CompositorSpy:
    """What the wrapped local compositor did: the threads it ran on; `failures` it raises."""

    failures: dict[str, Exception] = field(default_factory=dict)
    threads: set[str] = field(default_factory=set)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> CompositorSpy:
    """The local compositor, watched: animals in `spy.failures` raise, the others are drawn."""
    seen = CompositorSpy()
    real: Callable[..., Any] = LocalCompositor.compose

    def compose(
        self: LocalCompositor, image: Any, faces: Any, masks: Any, animal: str, **kw: Any
    ) -> Any:
        seen.threads.add(threading.current_thread().name)
        if animal in seen.failures:
            raise seen.failures[animal]
        return real(self, image, faces, masks, animal, **kw)

    monkeypatch.setattr(LocalCompositor, "compose", compose)
    return seen


def test_an_animal_that_fails_fails_alone(
    client: FlaskClient,
    astronaut_jpeg: bytes,
    storage_dir: Path,
    spy: CompositorSpy,
) -> None:
    spy.failures["cat"] = ContentBlocked("the image model refused to draw it (SAFETY)")
    response = post_json(
        client, astronaut_jpeg, animals=["fox", "cat", "dog"], generation_ids=["f1", "c1", "d1"]
    )

    assert response.status_code == 200
    fox, cat, dog = response.get_json()["results"]
    assert (cat["error"], cat["detail"]) == (
        "content_blocked",
        "the image model refused to draw it (SAFETY)",
    )
    assert (cat["image_url"], cat["object_name"]) == (None, None)
    assert not list((storage_dir / "avatars" / "anonymous").glob("c1.*"))
    for result in (fox, dog):
        assert result["error"] is None
        assert (storage_dir / result["object_name"]).is_file()


def test_a_bug_in_one_animal_is_still_a_500(
    client: FlaskClient, astronaut_jpeg: bytes, spy: CompositorSpy
) -> None:
    spy.failures["dog"] = ZeroDivisionError("a bug")
    response = post_json(client, astronaut_jpeg, animals=["fox", "dog"])

    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"


def test_a_pack_without_a_face_is_one_422(
    client: FlaskClient, coffee: Image.Image, calls: dict[str, int]
) -> None:
    response = post_json(client, encode(coffee), animals=["fox", "cat"])

    assert response.status_code == 422
    assert response.get_json()["error"] == "no_face_detected"
    assert calls["detect"] == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"animals": ["fox", "unicorn"]},
        {"animals": "fox,"},
        {"animals": ["fox", "FOX"]},
        {"animals": []},
        {"animals": ""},
        {"animals": "  "},
        {"animals": [*EVERY_ANIMAL, "cat"]},
        {"animals": ["fox", 3]},
        {"animals": ["fox", None]},
        {"animals": {"fox": True}},
        {"animals": 7},
        {"animals": ["fox"], "animal": "cat"},
        {"animals": ["fox", "cat"], "generation_ids": ["g1"]},
        {"animals": ["fox", "cat"], "generation_ids": "g1,g2,g3"},
        {"animals": ["fox", "cat"], "generation_ids": ["g1", "g1"]},
        {"animals": ["fox", "cat"], "generation_ids": ["g1", "../g2"]},
        {"animals": ["fox", "cat"], "generation_ids": ["g1", 2]},
        {"animals": ["fox", "cat"], "generation_ids": ["g1", "x" * 65]},
        {"animals": ["fox", "cat"], "generation_ids": []},
        {"animals": ["fox", "cat"], "generation_ids": {"fox": "g1"}},
        {"animals": ["fox"], "generation_id": "g1"},
        {"animal": "fox", "generation_ids": ["g1"]},
    ],
    ids=repr,
)
def test_bad_packs_are_400_naming_the_choices(
    client: FlaskClient,
    astronaut_jpeg: bytes,
    storage_dir: Path,
    calls: dict[str, int],
    fields: dict[str, Any],
) -> None:
    response = post_json(client, astronaut_jpeg, user_id="bad-pack", **fields)

    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert CHOICES in body["detail"]
    assert calls["detect"] == 0
    assert not (storage_dir / "avatars" / "bad-pack").exists()


@pytest.mark.parametrize(
    "query", ["animals=", "animals=fox,unicorn", "animals=fox&animal=cat", "animals=fox,Fox"]
)
def test_bad_packs_in_the_query_are_400(
    client: FlaskClient, astronaut_jpeg: bytes, query: str
) -> None:
    response = client.post(f"/?{query}", data=astronaut_jpeg, content_type="image/jpeg")

    assert response.status_code == 400
    assert CHOICES in response.get_json()["detail"]
