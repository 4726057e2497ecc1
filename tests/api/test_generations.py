"""The read side of generations: ownership, keyset pagination, signed links, deletion."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from api_testing import add_generation, assert_problem, auth, put_object
from sqlalchemy import func, select

from api.db import utcnow
from api.generations.models import Generation, GenerationStatus

FACE = {
    "box": {"x": 1.0, "y": 2.0, "width": 3.0, "height": 4.0},
    "landmarks": {"left_eye": {"x": 1.5, "y": 2.5}},
    "confidence": 0.9,
}


async def test_own_record_is_readable(client, make_user, db) -> None:
    user, key = await make_user()
    done = utcnow()
    generation = await add_generation(
        db,
        user["id"],
        animal="fox",
        status=GenerationStatus.succeeded,
        object_name=f"avatars/{user['id']}/g.png",
        faces=[FACE],
        completed_at=done,
    )
    body = (await client.get(f"/v1/generations/{generation.id}", headers=auth(key))).json()
    assert body.keys() == {
        "id",
        "status",
        "animal",
        "image_url",
        "error",
        "faces",
        "style",
        "pack_id",
        "created_at",
        "completed_at",
    }
    assert body["id"] == str(generation.id)
    assert body["style"] == "character"
    assert (body["status"], body["animal"], body["error"]) == ("succeeded", "fox", None)
    assert body["faces"] == [FACE | {"roll_deg": None}]
    assert body["image_url"].startswith(f"http://testserver/media/avatars/{user['id']}/g.png?")


async def test_failed_record_shows_its_error_and_no_link(client, make_user, db) -> None:
    user, key = await make_user()
    generation = await add_generation(
        db,
        user["id"],
        status=GenerationStatus.failed,
        object_name=None,
        error_code="no_face_detected",
        error_detail="no face found",
    )
    body = (await client.get(f"/v1/generations/{generation.id}", headers=auth(key))).json()
    assert body["image_url"] is None
    assert body["error"] == {"code": "no_face_detected", "detail": "no face found"}


async def test_links_are_signed_afresh_on_each_read(client, make_user, db, app) -> None:
    user, key = await make_user()
    name = f"avatars/{user['id']}/a.png"
    put_object(app.state.store, name, b"\x89PNG image")
    generation = await add_generation(
        db, user["id"], status=GenerationStatus.succeeded, object_name=name
    )
    url = (await client.get(f"/v1/generations/{generation.id}", headers=auth(key))).json()[
        "image_url"
    ]
    image = await client.get(url)
    assert image.status_code == 200
    assert image.content == b"\x89PNG image"


async def test_another_users_records_are_invisible(client, make_user, db, app) -> None:
    owner, owner_key = await make_user()
    _, intruder_key = await make_user()
    generation = await add_generation(db, owner["id"])
    path = f"/v1/generations/{generation.id}"

    assert_problem(await client.get(path, headers=auth(intruder_key)), 404, "not_found")
    assert_problem(await client.delete(path, headers=auth(intruder_key)), 404, "not_found")
    listed = (await client.get("/v1/generations", headers=auth(intruder_key))).json()
    assert listed == {"items": [], "next_cursor": None}
    # The owner still has it: the intruder's delete did nothing.
    assert (await client.get(path, headers=auth(owner_key))).status_code == 200


async def test_unknown_id_is_404_and_malformed_id_is_422(client, make_user) -> None:
    _, key = await make_user()
    response = await client.get(f"/v1/generations/{uuid.uuid4()}", headers=auth(key))
    assert_problem(response, 404, "not_found")
    response = await client.get("/v1/generations/not-a-uuid", headers=auth(key))
    assert_problem(response, 422, "invalid_request")


async def test_delete_removes_record_and_image(client, make_user, db, app) -> None:
    user, key = await make_user()
    name = f"avatars/{user['id']}/gone.png"
    put_object(app.state.store, name, b"png")
    generation = await add_generation(
        db, user["id"], status=GenerationStatus.succeeded, object_name=name
    )
    response = await client.delete(f"/v1/generations/{generation.id}", headers=auth(key))
    assert response.status_code == 204
    assert not (app.state.settings.storage_dir / name).exists()
    rows = await db.scalar(select(func.count()).select_from(Generation))
    assert rows == 0
    again = await client.get(f"/v1/generations/{generation.id}", headers=auth(key))
    assert again.status_code == 404


async def page_through(client, key, limit):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/generations", params=params, headers=auth(key))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages


@pytest.mark.parametrize("limit", [1, 5, 7, 25, 100])
async def test_pages_hold_every_row_once_even_with_equal_timestamps(
    client, make_user, db, limit
) -> None:
    user, key = await make_user()
    other, _ = await make_user()
    start = utcnow()
    # 20 rows share one instant, 5 are older and distinct: ties must be broken by id.
    times = [start] * 20 + [start - timedelta(seconds=s) for s in range(1, 6)]
    db.add_all(Generation(user_id=uuid.UUID(user["id"]), animal="cat", created_at=t) for t in times)
    db.add(Generation(user_id=uuid.UUID(other["id"]), animal="dog", created_at=start))
    await db.commit()

    seen, pages = await page_through(client, key, limit)

    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)) == 25
    # The last page is known to be last (the query reads one row ahead): no empty extra page.
    assert pages == -(-25 // limit)
    created = [item["created_at"] for item in seen]
    assert created == sorted(created, reverse=True)
    assert all(item["animal"] == "cat" for item in seen)


@pytest.mark.parametrize(
    "params",
    [{"cursor": "not-a-cursor"}, {"cursor": "YWJj"}, {"limit": 0}, {"limit": 101}],
)
async def test_bad_paging_parameters_are_422(client, make_user, params) -> None:
    _, key = await make_user()
    response = await client.get("/v1/generations", params=params, headers=auth(key))
    assert_problem(response, 422, "invalid_request")
