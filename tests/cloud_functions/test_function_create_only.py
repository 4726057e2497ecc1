"""Results are created once: a POST naming a stored result's user and generation cannot
replace it (409 conflict), while the same request again (the same bytes) succeeds."""

from __future__ import annotations

import uuid
from pathlib import Path

from flask.testing import FlaskClient
from function_testing import Post, post_json


def fresh_user() -> str:
    """A user id no other test of the session's shared store uses."""
    return f"u-{uuid.uuid4().hex}"


def test_another_animal_under_a_taken_name_is_a_409_and_changes_nothing(
    client: FlaskClient, storage_dir: Path, astronaut_jpeg: bytes
) -> None:
    ids = {"user_id": fresh_user(), "generation_id": "g1"}
    first = post_json(client, astronaut_jpeg, animal="fox", **ids)
    assert first.status_code == 200
    stored = storage_dir / first.get_json()["object_name"]
    before = stored.read_bytes()

    second = post_json(client, astronaut_jpeg, animal="cat", **ids)

    assert second.status_code == 409
    assert second.get_json() == {
        "error": "conflict",
        "detail": f"an object named {first.get_json()['object_name']!r} already exists; "
        "a result is never replaced",
    }
    assert stored.read_bytes() == before
    assert sorted(p.name for p in stored.parent.iterdir()) == ["g1.jpg"]  # no temp left


def test_a_raw_post_cannot_replace_another_users_image(
    client: FlaskClient, post_multipart: Post, storage_dir: Path, astronaut_jpeg: bytes
) -> None:
    victim = fresh_user()
    stored = post_multipart(astronaut_jpeg, animal="panda", user_id=victim, generation_id="g")
    path = storage_dir / stored.get_json()["object_name"]
    before = path.read_bytes()

    response = client.post(
        f"/?animal=tiger&user_id={victim}&generation_id=g",
        data=astronaut_jpeg,
        content_type="image/jpeg",
    )

    assert (response.status_code, response.get_json()["error"]) == (409, "conflict")
    assert path.read_bytes() == before


def test_the_same_request_again_succeeds(
    client: FlaskClient, storage_dir: Path, astronaut_jpeg: bytes
) -> None:
    ids = {"user_id": fresh_user(), "generation_id": "retried"}
    first = post_json(client, astronaut_jpeg, animal="koala", **ids)
    again = post_json(client, astronaut_jpeg, animal="koala", **ids)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.get_json()["object_name"] == first.get_json()["object_name"]


def test_a_taken_name_fails_only_its_animal_of_a_pack(
    client: FlaskClient, storage_dir: Path, astronaut_jpeg: bytes
) -> None:
    user = fresh_user()
    taken = post_json(client, astronaut_jpeg, animal="fox", user_id=user, generation_id="c1")
    assert taken.status_code == 200

    response = post_json(
        client, astronaut_jpeg, user_id=user, animals=["dog", "cat"], generation_ids=["d1", "c1"]
    )

    assert response.status_code == 200
    dog, cat = response.get_json()["results"]
    assert dog["error"] is None
    assert (storage_dir / dog["object_name"]).is_file()
    assert (cat["error"], cat["image_url"], cat["object_name"]) == ("conflict", None, None)
    assert "already exists" in cat["detail"]
