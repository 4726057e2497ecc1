"""A pack through the API and the real function on the gcp backends: Vision, Vertex AI and
Cloud Storage answered by local fakes (tests/cloud_functions/gcp), the Vertex fake's safety filter
refusing one animal. The API's request goes into the function app in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import functions_framework
import pytest
from api_testing import MAIN_PY, client_for, create_user, photo
from function_stub import upload_pack
from PIL import Image

from tests.cloud_functions.gcp.conftest import (  # noqa: F401 (fixtures the gcp function needs)
    emulator,
    gcp_env,
    gcs_emulator,
    rsa_key,
    service_account_info,
    vision,
)
from tests.cloud_functions.gcp.fakes import (
    PINK,
    FakeServer,
    Reply,
    running,
    vertex_blocked_candidate,
    vertex_image_reply,
    vertex_per_animal,
)

DRAWN = Reply(vertex_image_reply(Image.new("RGB", (1024, 1024), PINK)))


@pytest.fixture
def vertex() -> Iterator[FakeServer]:
    """Vertex AI drawing every animal but the panda, which its safety filter refuses."""
    blocked = {"panda": Reply(vertex_blocked_candidate())}  # finishReason SAFETY
    with running(vertex_per_animal(blocked, DRAWN)) as server:
        yield server


@pytest.fixture
def function_app(gcp_env: None) -> Any:  # noqa: F811 (the gcp function, for contract_app)
    return functions_framework.create_app(target="generate_animal_avatar", source=str(MAIN_PY))


async def test_one_animal_refused_by_the_safety_filter_fails_alone(contract_app, vertex) -> None:
    async with contract_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, photo("astronaut"), "fox,panda,koala")
        assert response.status_code == 201, response.text
        pack = response.json()
        assert pack["status"] == "partial"
        by_animal = {g["animal"]: g for g in pack["generations"]}
        panda = by_animal.pop("panda")
        assert panda["status"] == "failed"
        assert panda["error"]["code"] == "content_blocked"
        assert "SAFETY" in panda["error"]["detail"]
        assert panda["image_url"] is None
        assert {g["status"] for g in by_animal.values()} == {"succeeded"}
        assert all(g["image_url"] for g in by_animal.values())
        assert len(vertex.requests) == 3  # one call per animal, the face found once
