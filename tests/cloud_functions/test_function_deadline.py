"""The caller's deadline (X-Request-Deadline): once it has passed, nothing more is stored."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient
from function_testing import MAIN_PY
from werkzeug.test import TestResponse

import avatar.pipeline
from avatar.backends.local.compositor import LocalCompositor
from avatar.backends.local.store import LocalFileStore
from avatar.config import get_settings
from avatar.errors import InvalidRequest
from avatar.inputs import DEADLINE_HEADER, parse_deadline

FORMS = ("multipart", "raw", "json")
NOW = 1_790_000_000.0  # the fake clock's start
PASSED_DETAIL = "the caller's deadline passed before the result was stored; nothing was stored"


def post(
    client: FlaskClient, form: str, jpeg: bytes, deadline: str | None, **fields: str
) -> TestResponse:
    """POST the image in one of the input forms, with the deadline header when given."""
    headers = {} if deadline is None else {DEADLINE_HEADER: deadline}
    fields = {"user_id": "late", **fields}
    if "animals" not in fields:
        fields.setdefault("animal", "fox")
    if form == "multipart":
        data = {"image": (io.BytesIO(jpeg), "selfie.jpg"), **fields}
        return client.post("/", data=data, content_type="multipart/form-data", headers=headers)
    if form == "raw":
        query = "&".join(f"{name}={value}" for name, value in fields.items())
        return client.post(f"/?{query}", data=jpeg, content_type="image/jpeg", headers=headers)
    body = {"image_base64": base64.b64encode(jpeg).decode(), **fields}
    return client.post("/", json=body, headers=headers)


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


@pytest.fixture
def store_root(function_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty storage folder of this test's own, so "nothing stored" can be seen."""
    root = tmp_path / "media"
    monkeypatch.setenv("STORAGE_DIR", str(root))
    get_settings.cache_clear()
    return root


@pytest.mark.parametrize("form", FORMS)
def test_a_passed_deadline_is_a_504_and_stores_nothing(
    client: FlaskClient, store_root: Path, astronaut_jpeg: bytes, form: str
) -> None:
    response = post(client, form, astronaut_jpeg, f"{time.time() - 1:.3f}")

    assert response.status_code == 504
    assert response.get_json() == {"error": "upstream_timeout", "detail": PASSED_DETAIL}
    assert stored_files(store_root) == []


def test_a_passed_deadline_fails_a_whole_pack(
    client: FlaskClient, store_root: Path, astronaut_jpeg: bytes
) -> None:
    response = post(client, "json", astronaut_jpeg, "1.000", animals="fox,cat")

    assert response.status_code == 504
    assert response.get_json()["error"] == "upstream_timeout"
    assert stored_files(store_root) == []


@pytest.mark.parametrize("form", FORMS)
def test_a_future_deadline_stores_as_usual(
    client: FlaskClient, store_root: Path, astronaut_jpeg: bytes, form: str
) -> None:
    response = post(client, form, astronaut_jpeg, f"{time.time() + 3600:.3f}")

    assert response.status_code == 200, response.get_json()
    assert stored_files(store_root) == [store_root / response.get_json()["object_name"]]


def test_the_store_is_told_the_deadline(
    client: FlaskClient,
    store_root: Path,
    astronaut_jpeg: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    told: list[float | None] = []
    real: Callable[..., None] = LocalFileStore.put

    def put(self: LocalFileStore, *args: Any, deadline: float | None = None) -> None:
        told.append(deadline)
        real(self, *args, deadline=deadline)

    monkeypatch.setattr(LocalFileStore, "put", put)
    deadline = time.time() + 3600

    assert post(client, "raw", astronaut_jpeg, f"{deadline:.3f}").status_code == 200
    assert post(client, "raw", astronaut_jpeg, None).status_code == 200
    assert told == [pytest.approx(deadline, abs=0.001), None]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "",
        "0",
        "0.000",
        "-1790000000",
        "nan",
        "inf",
        "1e9",  # a decimal number, as the API writes it, and nothing else
        "1_790_000_000",
        "1790000000.25.1",
        "0x6AB0E580",
        "9" * 400,
    ],
)
def test_a_malformed_deadline_is_a_400(
    client: FlaskClient, store_root: Path, astronaut_jpeg: bytes, form: str, value: str
) -> None:
    response = post(client, form, astronaut_jpeg, value)

    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert DEADLINE_HEADER in body["detail"]
    assert stored_files(store_root) == []


@pytest.mark.parametrize(
    ("value", "deadline"),
    [
        (None, None),
        ("1790000000.250", 1_790_000_000.25),
        ("1790000000", 1_790_000_000.0),
        (" 1790000000.5 ", 1_790_000_000.5),
    ],
)
def test_deadline_values(value: str | None, deadline: float | None) -> None:
    assert parse_deadline(value) == deadline


def test_a_deadline_is_a_positive_number() -> None:
    with pytest.raises(InvalidRequest):
        parse_deadline("-0.5")


# --- a deadline that passes during the pipeline (a fake clock, moved on by the compositor) ----


@dataclass
class FakeClock:
    """Unix time as the pipeline reads it; tests move it on."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The pipeline's clock, faked for the function `clocked_client` loads."""
    fake = FakeClock()
    real = avatar.pipeline.generate_avatar

    def generate(*args: Any) -> dict[str, Any]:
        return real(*args, clock=fake)

    monkeypatch.setattr(avatar.pipeline, "generate_avatar", generate)
    return fake


@pytest.fixture
def clocked_client(clock: FakeClock) -> FlaskClient:
    """The real main.py, loaded after the fake clock is in place (it binds generate_avatar)."""
    app = functions_framework.create_app(target="generate_animal_avatar", source=str(MAIN_PY))
    return app.test_client()


def late_compositor(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, slow: set[str]) -> list[str]:
    """Make composing the `slow` animals take until past NOW + 60; the animals composed."""
    composed: list[str] = []
    real: Callable[..., Any] = LocalCompositor.compose

    def compose(
        self: LocalCompositor, image: Any, faces: Any, masks: Any, animal: str, **kw: Any
    ) -> Any:
        composed.append(animal)
        if animal in slow:
            clock.now = NOW + 100
        return real(self, image, faces, masks, animal, **kw)

    monkeypatch.setattr(LocalCompositor, "compose", compose)
    return composed


def test_a_deadline_passing_while_composing_stores_nothing(
    clocked_client: FlaskClient,
    clock: FakeClock,
    store_root: Path,
    astronaut_jpeg: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    composed = late_compositor(monkeypatch, clock, slow={"fox"})

    response = post(clocked_client, "json", astronaut_jpeg, f"{NOW + 60:.3f}")

    assert composed == ["fox"]  # detected and composed in time; late for the store
    assert response.status_code == 504
    assert response.get_json() == {"error": "upstream_timeout", "detail": PASSED_DETAIL}
    assert stored_files(store_root) == []


def test_a_deadline_passing_in_a_pack_fails_the_request_and_stores_no_more(
    clocked_client: FlaskClient,
    clock: FakeClock,
    store_root: Path,
    astronaut_jpeg: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    composed = late_compositor(monkeypatch, clock, slow={"cat"})

    response = post(
        clocked_client, "json", astronaut_jpeg, f"{NOW + 60:.3f}",
        animals="fox,cat,dog", generation_ids="g-fox,g-cat,g-dog",
    )  # fmt: skip

    assert composed == ["fox", "cat"]  # one after another (the local compositor's way)
    assert response.status_code == 504  # not a 200 with failed animals: the caller is gone
    assert response.get_json()["error"] == "upstream_timeout"
    # Stored before the deadline, it stays (the caller cleans it up); nothing after it.
    assert stored_files(store_root) == [store_root / "avatars" / "late" / "g-fox.jpg"]


def test_a_deadline_not_reached_on_the_clock_stores(
    clocked_client: FlaskClient, clock: FakeClock, store_root: Path, astronaut_jpeg: bytes
) -> None:
    response = post(clocked_client, "json", astronaut_jpeg, f"{NOW + 60:.3f}", generation_id="g")

    assert response.status_code == 200
    assert stored_files(store_root) == [store_root / "avatars" / "late" / "g.jpg"]
