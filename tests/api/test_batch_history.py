"""`python -m batch --user-id`: the batch job's results in the user's history, through the API
(the list, `image_url`, erasure), as for uploads; a rerun records nothing twice."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest
from api_testing import auth, client_for, create_user
from conftest import AppFactory
from PIL import Image

from batch.cli import main


def selfie() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(data.astronaut())).save(buffer, "JPEG")
    return buffer.getvalue()


async def batch(*argv: str) -> tuple[int, str]:
    """The command line on a thread (it runs its own event loop for the database)."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(main, list(argv), out=out, err=err)
    return code, out.getvalue() + err.getvalue()


async def test_batch_results_are_generations_of_the_user(
    app_factory: AppFactory,
    database_url: str,
    media_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "me.jpg").write_bytes(selfie())
    (tmp_path / "in" / "blank.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AVATAR_BACKEND", "local")
    monkeypatch.setenv("STORAGE_DIR", str(media_dir))  # the function's store is the API's
    manifest = tmp_path / "out" / "manifest.jsonl"
    argv = ("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--animal", "fox,tiger", "--style", "paint", "--workers", "1")  # fmt: skip

    async with (
        app_factory(isolated=False, storage_dir=media_dir) as app,
        client_for(app) as client,
    ):
        user, key = await create_user(client)
        code, printed = await batch(*argv, "--user-id", user["id"])
        assert code == 0, printed

        page = (await client.get("/v1/generations", headers=auth(key))).json()
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert {item["id"] for item in page["items"]} == {line["generation_id"] for line in lines}
        records = {item["id"]: item for item in page["items"]}
        for line in lines:
            record = records[line["generation_id"]]
            assert record["animal"] == line["animal"]
            assert record["style"] == line["style"] == "paint"
            assert record["status"] == line["status"]
            assert record["pack_id"] is None
            if line["status"] == "succeeded":
                image = await client.get(record["image_url"])
                assert image.status_code == 200
                assert image.content == Path(line["output"]).read_bytes()  # noqa: ASYNC240
                assert record["faces"] == line["faces"]
            else:
                assert record["error"]["code"] == line["error"]["code"] == "invalid_image"
                assert record["image_url"] is None

        # Done again (a crash between the history and the manifest, or --retry-failed):
        # the same records, not new ones.
        manifest.unlink()
        code, printed = await batch(*argv, "--user-id", user["id"])
        assert code == 0, printed
        again = (await client.get("/v1/generations", headers=auth(key))).json()
        assert {item["id"] for item in again["items"]} == set(records)

        assert (await client.delete("/v1/users/me", headers=auth(key))).status_code == 204
        assert not (media_dir / "avatars" / user["id"]).exists()

        code, printed = await batch(*argv, "--user-id", user["id"], "--retry-failed")
        assert code == 1
        assert f"no user {user['id']}" in printed


async def test_an_unreachable_database_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in").mkdir()
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    somebody = "8d5e6c1e-55d7-4f31-9c2f-1c1e0b3f0a11"
    code, printed = await batch("--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"),
                                "--animal", "fox", "--user-id", somebody)  # fmt: skip
    assert code == 1
    assert "cannot read the API's database" in printed
    assert "nobody" not in printed  # no URL (it may hold a password) in the message
