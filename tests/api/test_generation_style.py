"""A generation's `style` (`character`, the default, or `paint`): recorded, shown, sent to the
function, part of the Idempotency-Key's fingerprint; work resumed later draws the style its
record was asked for. respx stands in for the function.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from api_testing import auth, client_for, create_user
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    assert_problem,
    function_stubbed,
    upload,
    upload_pack,
    wait_finished,
)
from sqlalchemy import func, select

from api.generations import lifecycle
from api.generations.models import Generation
from api.uploads import request_hash

SELFIE = a_selfie((300, 200))


@pytest.fixture
def stub() -> Iterator[FunctionStub]:
    with function_stubbed(FunctionStub()) as stub:
        yield stub


@pytest.fixture
def style_app(app_factory: Any, stub: FunctionStub) -> Any:
    """`async with style_app() as app`: an app that commits (async work runs in its own tasks)
    and calls the stub."""

    def start(**overrides: Any) -> Any:
        return app_factory(**({"isolated": False, "function_url": FUNCTION_URL} | overrides))

    return start


def sent_styles(stub: FunctionStub) -> list[str]:
    """The `style` field of each call the function got."""
    return [parts["style"][0].decode() for parts in stub.received]


async def stored_styles(app: Any) -> dict[str, str]:
    """Each record's style, by id."""
    async with app.state.sessionmaker() as session:
        rows = (await session.execute(select(Generation.id, Generation.style))).all()
    return {str(row.id): row.style for row in rows}


async def test_without_a_style_a_generation_is_drawn_as_a_character(style_app, stub) -> None:
    async with style_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload(client, key, SELFIE)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["style"] == "character"
        assert await stored_styles(app) == {body["id"]: "character"}
    assert sent_styles(stub) == ["character"]


@pytest.mark.parametrize("given", ["paint", " Paint ", "PAINT"])
async def test_a_generation_in_paint_is_recorded_shown_and_sent(style_app, stub, given) -> None:
    async with style_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload(client, key, SELFIE, "panda", style=given)
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["animal"], body["style"]) == ("panda", "paint")
        record = await client.get(f"/v1/generations/{body['id']}", headers=auth(key))
        assert record.json()["style"] == "paint"
        history = (await client.get("/v1/generations", headers=auth(key))).json()["items"]
        assert [(item["id"], item["style"]) for item in history] == [(body["id"], "paint")]
        assert await stored_styles(app) == {body["id"]: "paint"}
    (sent,) = stub.received
    assert (sent["animal"][0], sent["style"][0]) == (b"panda", b"paint")


@pytest.mark.parametrize("style", ["watercolour", " ", "paint,character", "paint\x00", "é" * 9])
@pytest.mark.parametrize("path", ["/v1/generations", "/v1/packs"])
async def test_an_unknown_style_is_invalid_and_nothing_is_made(
    style_app, stub, path, style
) -> None:
    async with style_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        send = upload if path == "/v1/generations" else upload_pack
        body = assert_problem(await send(client, key, SELFIE, style=style), 422, "invalid_request")
        assert "character, paint" in body["detail"]
        async with app.state.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Generation)) == 0
    assert stub.received == []


async def test_two_style_fields_are_invalid(style_app, stub) -> None:
    async with style_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await client.post(
            "/v1/generations",
            headers=auth(key),
            files={"image": ("selfie.jpg", SELFIE, "image/jpeg")},
            data={"animal": "fox", "style": ["paint", "character"]},
        )
        body = assert_problem(response, 422, "invalid_request")
        assert "one `style`" in body["detail"]
    assert stub.received == []


async def test_an_async_generation_is_drawn_in_its_style(style_app, stub) -> None:
    async with style_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload(client, key, SELFIE, style="paint", prefer="respond-async")
        assert response.status_code == 202, response.text
        assert (response.json()["status"], response.json()["style"]) == ("pending", "paint")
        done = await wait_finished(client, key, response.headers["location"])
        assert (done["status"], done["style"]) == ("succeeded", "paint")
    assert sent_styles(stub) == ["paint"]


async def test_a_pack_in_paint_draws_every_animal_in_paint(style_app, stub) -> None:
    async with style_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "fox,cat", style="Paint")
        assert response.status_code == 201, response.text
        pack = response.json()
        assert pack["style"] == "paint"
        assert [(g["animal"], g["style"]) for g in pack["generations"]] == [
            ("fox", "paint"),
            ("cat", "paint"),
        ]
        again = (await client.get(f"/v1/packs/{pack['id']}", headers=auth(key))).json()
        assert again["style"] == "paint"
        assert {g["style"] for g in again["generations"]} == {"paint"}
    (sent,) = stub.received  # one call for the pack, in its style
    assert (sent["animals"][0], sent["style"][0]) == (b"fox,cat", b"paint")


async def test_an_async_pack_is_drawn_in_its_style(style_app, stub) -> None:
    async with style_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(
            client, key, SELFIE, "fox,cat", style="paint", prefer="respond-async"
        )
        assert response.status_code == 202, response.text
        assert response.json()["style"] == "paint"
        done = await wait_finished(client, key, response.headers["location"])
        assert (done["status"], done["style"]) == ("succeeded", "paint")
    assert sent_styles(stub) == ["paint"]


async def test_work_resumed_after_a_restart_draws_the_style_its_record_was_asked_for(
    style_app, stub
) -> None:
    async with style_app() as app, client_for(app) as client:
        user, key = await create_user(client)
        user_id = uuid.UUID(user["id"])
        # As a process that died after accepting them leaves an async generation and an async
        # pack: pending, their uploads kept, their style on their records only.
        generation = lifecycle.born(
            user_id, "fox", style="paint", idempotency_key=None, request_hash=None, claimed=False
        )
        pack, members = lifecycle.born_pack(
            user_id, ["cat", "dog"], style="paint", idempotency_key=None, request_hash=None,
            claimed=False,
        )  # fmt: skip
        kept = lifecycle.StoredInput(SELFIE, "image/jpeg")
        async with app.state.sessionmaker() as session, session.begin():
            await lifecycle.insert_new(session, generation, kept)
            await lifecycle.insert_pack(session, pack, members, kept)
        async with style_app() as restarted, client_for(restarted) as again:
            one = await wait_finished(again, key, f"/v1/generations/{generation.id}")
            both = await wait_finished(again, key, f"/v1/packs/{pack.id}")
    assert (one["status"], one["style"]) == ("succeeded", "paint")
    assert (both["status"], both["style"]) == ("succeeded", "paint")
    assert sent_styles(stub) == ["paint", "paint"]


@pytest.mark.parametrize("path", ["/v1/generations", "/v1/packs"])
async def test_an_idempotency_key_reused_with_another_style_is_a_conflict(
    style_app, stub, path
) -> None:
    send = upload if path == "/v1/generations" else upload_pack
    async with style_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        first = await send(client, key, SELFIE, style="paint", idempotency_key="k-1")
        same = await send(client, key, SELFIE, style=" PAINT", idempotency_key="k-1")
        assert (first.status_code, same.status_code) == (201, 201)
        assert same.json()["id"] == first.json()["id"]
        other = await send(client, key, SELFIE, style="character", idempotency_key="k-1")
        assert_problem(other, 409, "conflict")
        unsaid = await send(client, key, SELFIE, idempotency_key="k-1")  # the default: character
        assert_problem(unsaid, 409, "conflict")
    assert len(stub.received) == 1


async def test_the_style_is_documented_on_both_upload_forms_and_in_the_records(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/generations", "/v1/packs"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        style = body["schema"]["properties"]["style"]
        assert (style["enum"], style["default"]) == (["character", "paint"], "character")
        assert "markings, ears and nose" in style["description"]
        assert "style" not in body["schema"]["required"]
    schemas = spec["components"]["schemas"]
    for name in ("GenerationPublic", "PackPublic"):
        assert schemas[name]["properties"]["style"]["enum"] == ["character", "paint"]
        assert "style" in schemas[name]["required"]
    names = list(schemas["GenerationPublic"]["properties"])
    assert names[names.index("faces") + 1] == "style"
    assert names[names.index("style") + 1] == "pack_id"


def test_the_default_style_keeps_the_fingerprint_a_request_had_before_styles() -> None:
    digest = hashlib.sha256(b"selfie").digest()
    before_styles = hashlib.sha256(b"cat,fox\n" + digest).hexdigest()

    assert request_hash(("cat", "fox"), "character", digest) == before_styles
    assert request_hash(("cat", "fox"), "paint", digest) != before_styles
    assert request_hash(("cat",), "paint", digest) != request_hash(("cat",), "character", digest)
