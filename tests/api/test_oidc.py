"""api.work.oidc on its own: the certificates' cache and what an unreachable issuer means."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cloud_tasks_fake import TASKS_ACCOUNT, FakeGoogle, SigningKey

from api.errors import Forbidden, Unauthorized
from api.work.oidc import OidcVerifier

AUDIENCE = "https://api.example/internal/work/generation/1"


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


async def test_a_valid_token_passes_and_the_certificates_are_fetched_once(google) -> None:
    async with httpx.AsyncClient() as http:
        verifier = OidcVerifier(google.certs_url, http)
        for _ in range(5):
            await verifier.verify(
                f"Bearer {google.token(AUDIENCE)}", audience=AUDIENCE, email=TASKS_ACCOUNT
            )
    assert google.cert_fetches == 1


async def test_an_unreachable_issuer_refuses_every_token_until_it_answers() -> None:
    async with httpx.AsyncClient() as http:
        verifier = OidcVerifier("http://127.0.0.1:9/certs", http)
        key = SigningKey()
        token = key.sign({"iss": "https://accounts.google.com", "aud": AUDIENCE})
        with pytest.raises(Unauthorized):
            await verifier.verify(f"Bearer {token}", audience=AUDIENCE, email=TASKS_ACCOUNT)


async def test_keys_already_fetched_still_verify_while_the_issuer_is_down(
    google, monkeypatch
) -> None:
    async with httpx.AsyncClient() as http:
        verifier = OidcVerifier(google.certs_url, http)
        token = f"Bearer {google.token(AUDIENCE)}"
        await verifier.verify(token, audience=AUDIENCE, email=TASKS_ACCOUNT)
        google.stop()
        later = [10_000.0]
        monkeypatch.setattr("api.work.oidc.time.monotonic", lambda: later[0])  # the cache expired
        await verifier.verify(token, audience=AUDIENCE, email=TASKS_ACCOUNT)
        # Not asked again on every request while it is down: once a minute at most.
        monkeypatch.setattr(verifier, "_fetch", None)  # a call would fail
        later[0] += 30
        await verifier.verify(token, audience=AUDIENCE, email=TASKS_ACCOUNT)


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a.b", "Bearer ...."]
)
async def test_malformed_authorization_is_401(google, authorization) -> None:
    async with httpx.AsyncClient() as http:
        verifier = OidcVerifier(google.certs_url, http)
        with pytest.raises(Unauthorized):
            await verifier.verify(authorization, audience=AUDIENCE, email=TASKS_ACCOUNT)


async def test_another_account_is_403_not_401(google) -> None:
    async with httpx.AsyncClient() as http:
        verifier = OidcVerifier(google.certs_url, http)
        token = google.token(AUDIENCE, "someone@example.iam.gserviceaccount.com")
        with pytest.raises(Forbidden):
            await verifier.verify(f"Bearer {token}", audience=AUDIENCE, email=TASKS_ACCOUNT)
