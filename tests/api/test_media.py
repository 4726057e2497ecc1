"""/media links: the signature contract, expiry, tampering, missing files, escaping names."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from api_testing import MEDIA_KEY, assert_problem, put_object

from api.storage.local import LocalFileStore
from avatar.backends.local.store import LocalFileStore as FunctionStore

NAME = "avatars/u1/g1.png"


def contract_url(name: str, expires: int, key: str = MEDIA_KEY) -> str:
    # Written out from the contract, independently of api.security: the function signs so too.
    signature = hmac.new(key.encode(), f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"/media/{name}?expires={expires}&signature={signature}"


@pytest.fixture
async def stored(app) -> bytes:
    data = b"\x89PNG\r\n\x1a\n fake png"
    put_object(app.state.store, NAME, data)
    return data


async def test_contract_signed_link_serves_the_file(client, stored) -> None:
    response = await client.get(contract_url(NAME, int(time.time()) + 60))
    assert response.status_code == 200
    assert response.content == stored
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "private"


async def test_store_signs_by_the_contract(app, stored) -> None:
    url = await app.state.store.signed_url(NAME, 300)
    expires = int(url.split("expires=")[1].split("&")[0])
    assert abs(expires - (time.time() + 300)) < 5
    assert url == "http://testserver" + contract_url(NAME, expires)


@pytest.mark.parametrize(
    "url",
    [
        contract_url(NAME, int(time.time()) - 1),  # expired
        contract_url(NAME, int(time.time()) + 60, key="another-key"),  # wrong key
        contract_url("avatars/u1/other.png", int(time.time()) + 60).replace(
            "avatars/u1/other.png", NAME
        ),  # signature of another object
        f"/media/{NAME}",  # unsigned
        f"/media/{NAME}?expires={int(time.time()) + 60}&signature=00",
    ],
    ids=["expired", "wrong-key", "other-object", "unsigned", "bad-signature"],
)
async def test_bad_links_are_403(client, stored, url) -> None:
    assert_problem(await client.get(url), 403, "forbidden")


async def test_extended_expiry_breaks_the_signature(client, stored) -> None:
    url = contract_url(NAME, int(time.time()) + 60)
    tampered = url.replace("expires=", "expires=9")
    assert_problem(await client.get(tampered), 403, "forbidden")


async def test_missing_file_is_404(client) -> None:
    response = await client.get(contract_url("avatars/u1/none.png", int(time.time()) + 60))
    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize("name", ["../secret.png", "avatars/../../x.png", "/etc/passwd", ""])
async def test_store_refuses_names_outside_its_root(tmp_path, name) -> None:
    store = LocalFileStore(tmp_path / "root", public_base_url="http://x", signing_key="k")
    (tmp_path / "secret.png").write_bytes(b"secret")
    with pytest.raises(Exception, match="no such object"):
        await store.read(name)


async def test_delete_prefix_spares_other_users(tmp_path) -> None:
    store = LocalFileStore(tmp_path, public_base_url="http://x", signing_key="k")
    for name in ("avatars/u1/a.png", "avatars/u1/b.png", "avatars/u10/c.png"):
        put_object(store, name, b"x")
    await store.delete_prefix("avatars/u1/")
    assert not (tmp_path / "avatars/u1").exists()
    assert (tmp_path / "avatars/u10/c.png").exists()
    await store.delete("avatars/u10/c.png")
    await store.delete("avatars/u10/c.png")  # a missing object is not an error
    assert not (tmp_path / "avatars/u10/c.png").exists()


async def test_a_link_the_function_signed_is_served_by_the_api(
    client, app, stored, tmp_path
) -> None:
    # One signer for both: the function's local store signs, the API's /media verifies.
    function_store = FunctionStore(tmp_path, "http://testserver/media", MEDIA_KEY.encode())
    url = function_store.signed_url(NAME, 60)
    response = await client.get(url.removeprefix("http://testserver"))
    assert response.status_code == 200
    assert response.content == stored
