"""Where a webhook may point outside development (server-side request forgery), checked when
it is set and at every attempt, on the addresses the attempt would connect to.

These tests never open a connection, even if the guard were broken: the app's resolver is a
stub (a dict), and its transport records any request and answers it with an error instead of
connecting anywhere. Nothing here may reach an address outside loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any

import httpcore
import httpx
import pytest
from api_testing import UNREACHABLE_URL, assert_problem, auth, client_for, create_user
from function_stub import FUNCTION_URL, FunctionStub, a_selfie, function_stubbed, upload

from api.webhooks import guard
from api.webhooks.delivery import Network

SELFIE = a_selfie((300, 200))
PRODUCTION = {
    "isolated": False,
    "environment": "production",
    "function_url": FUNCTION_URL,
    "function_max_attempts": 1,
    "webhook_retry_schedule_s": (30.0,),
}
PUBLIC = "93.184.216.34"


class Resolver:
    """A DNS stub: name -> addresses; any other name does not resolve."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[guard.IPAddress]:
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.names[host]]


class NoConnections(httpx.AsyncBaseTransport):
    """Records each request it is handed and refuses it: nothing is ever connected."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raise httpx.ConnectError("this test opens no connections", request=request)


@pytest.fixture
def stub() -> Any:
    with function_stubbed(FunctionStub()) as stub:  # no pass-through: respx refuses the rest
        yield stub


@pytest.fixture
def resolver() -> Resolver:
    return Resolver(
        {
            "hooks.example": [PUBLIC],
            "private.example": ["10.1.2.3"],
            "mixed.example": [PUBLIC, "192.168.1.20"],
            "metadata.google.internal": ["169.254.169.254"],
            "localhost": ["127.0.0.1", "::1"],
            "v6private.example": ["fd12:3456::1"],
        }
    )


@pytest.fixture
def transport() -> NoConnections:
    return NoConnections()


@pytest.fixture
def production_app(app_factory: Any, stub: Any, resolver: Resolver, transport: NoConnections):
    def start(**overrides: Any) -> Any:
        network = Network(resolver=resolver, transport=transport)
        return app_factory(webhook_network=network, **(PRODUCTION | overrides))

    return start


REFUSED = [
    ("http://127.0.0.1/hooks", "must start with https://"),
    ("http://hooks.example/hooks", "must start with https://"),
    ("https://127.0.0.1/hooks", "loopback"),
    ("https://10.0.0.1/hooks", "private"),
    ("https://169.254.169.254/computeMetadata/v1/", "link-local"),
    ("https://[::1]/hooks", "loopback"),
    ("https://[fe80::1]/hooks", "link-local"),
    ("https://[fd00::1]/hooks", "private"),
    ("https://[::ffff:127.0.0.1]/hooks", "127.0.0.1"),
    ("https://[2002:a00:1::]/hooks", "carrying 10.0.0.1"),
    ("https://224.0.0.251/hooks", "multicast"),
    ("https://[ff02::1]/hooks", "multicast"),
    ("https://100.64.0.1/hooks", "not a public address"),
    ("https://0.0.0.0/hooks", "unspecified"),
    ("https://private.example/hooks", "private.example resolves to 10.1.2.3, a private"),
    ("https://mixed.example/hooks", "192.168.1.20, a private"),
    ("https://metadata.google.internal/", "169.254.169.254"),
    ("https://localhost/hooks", "loopback"),
    ("https://v6private.example/hooks", "fd12:3456::1"),
    ("https://nowhere.example/hooks", "does not resolve"),
    ("https://hooks.example:8443/hooks", "port must be 443"),
    ("https://hooks.example:80/hooks", "port must be 443"),
    ("https://user:secret@hooks.example/hooks", "credentials"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
async def test_a_url_outside_the_public_internet_is_refused_when_set(
    production_app, transport, url, why
) -> None:
    async with production_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await client.put("/v1/users/me/webhook", json={"url": url}, headers=auth(key))
        assert_problem(response, 422, "invalid_request")
        assert why in response.json()["detail"], response.json()["detail"]
        assert (await client.get("/v1/users/me/webhook", headers=auth(key))).status_code == 404
    assert transport.requests == []


async def test_a_public_https_url_is_accepted_and_other_ports_only_when_configured(
    production_app, resolver
) -> None:
    async with production_app(webhook_allowed_ports=(443, 8443)) as app, client_for(app) as client:
        _, key = await create_user(client)
        for url in ["https://hooks.example/hooks", "https://hooks.example:8443/hooks"]:
            response = await client.put(
                "/v1/users/me/webhook", json={"url": url}, headers=auth(key)
            )
            assert response.status_code == 200, response.text
    assert resolver.asked == ["hooks.example", "hooks.example"]  # resolved when set


async def test_a_name_that_turns_private_later_is_a_failed_attempt_not_a_connection(
    production_app, resolver, transport
) -> None:
    async with production_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await client.put(
            "/v1/users/me/webhook", json={"url": "https://hooks.example/hooks"}, headers=auth(key)
        )
        assert response.status_code == 200, response.text
        resolver.names["hooks.example"] = ["10.0.0.7"]  # DNS rebinding
        assert (await upload(client, key, SELFIE)).status_code == 201
        log = await attempted(client, key)
    assert transport.requests == []
    assert (log["status"], log["attempts"], log["last_status_code"]) == ("pending", 1, None)
    assert log["last_error"] == ("refused: hooks.example resolves to 10.0.0.7, a private address")
    assert log["next_attempt_at"] is not None  # retried on the schedule, in case DNS recovers


class Connections(httpcore.AsyncNetworkBackend):
    """Stands in for the network under the guarded transport: records where a connection
    would be opened, and opens none."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.opened.append((host, port))
        raise httpcore.ConnectError("this test opens no connections")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_the_transport_connects_only_to_an_address_it_checked_as_it_connected(
    resolver,
) -> None:
    connections = Connections()
    transport = guard.guarded_transport(POLICY, resolver, limits=httpx.Limits(), inner=connections)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post("https://hooks.example/hooks", content=b"{}")
        assert connections.opened == [(PUBLIC, 443)]  # the address, not the name again
        for url in ["https://private.example/", "https://10.0.0.1/", "https://[::1]/"]:
            with pytest.raises(httpx.ConnectError, match="refused"):
                await client.post(url, content=b"{}")
    assert connections.opened == [(PUBLIC, 443)]


async def test_a_name_that_turns_private_between_the_check_and_the_connection_is_refused(
    app_factory,
) -> None:
    """DNS rebinding: the attempt's own check sees a public address, the connection's lookup
    a private one. The connection is refused; nothing is opened. (No respx here: it would
    stand in for the transport under test. The function is down, so the generation fails,
    which is an event too.)"""
    answers = iter([[PUBLIC], [PUBLIC], ["10.0.0.7"]])  # set, attempt check, connection

    async def rebinding(host: str, port: int) -> list[guard.IPAddress]:
        return [ipaddress.ip_address(a) for a in next(answers)]

    connections = Connections()
    transport = guard.guarded_transport(POLICY, rebinding, limits=httpx.Limits(), inner=connections)
    network = Network(resolver=rebinding, transport=transport)
    settings = PRODUCTION | {"function_url": UNREACHABLE_URL}
    async with app_factory(webhook_network=network, **settings) as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await client.put(
            "/v1/users/me/webhook", json={"url": "https://hooks.example/hooks"}, headers=auth(key)
        )
        assert response.status_code == 200, response.text
        assert (await upload(client, key, SELFIE)).status_code == 503
        log = await attempted(client, key)
    assert connections.opened == []
    assert log["status"] == "pending"
    assert "hooks.example resolves to 10.0.0.7, a private address" in log["last_error"]


async def attempted(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    """The user's only delivery, once it has had an attempt."""
    deadline = time.monotonic() + 10
    while True:
        response = await client.get("/v1/users/me/webhook/deliveries", headers=auth(key))
        items = response.json()["items"]
        if items and items[0]["attempt_log"]:
            log: dict[str, Any] = items[0]
            return log
        assert time.monotonic() < deadline, items[0] if items else items
        await asyncio.sleep(0.02)


# --- the guard's rules, directly ----------------------------------------------------------------

POLICY = guard.Policy(development=False)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.18.0.1",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "fec0::1",
        "ff02::1",
        "ff0e::1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",
        "64:ff9b::a9fe:a9fe",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(address) -> None:
    assert guard.refusal(ipaddress.ip_address(address), POLICY) is not None


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "2a00:1450::1"])
def test_public_addresses_pass(address) -> None:
    assert guard.refusal(ipaddress.ip_address(address), POLICY) is None


def test_development_allows_http_and_any_address() -> None:
    development = guard.Policy(development=True)
    target = guard.parse("http://127.0.0.1:8001/hooks", development)
    assert (target.host, target.port) == ("127.0.0.1", 8001)
    assert guard.refusal(ipaddress.ip_address("10.0.0.1"), development) is None
    with pytest.raises(guard.Refused, match="must start with"):
        guard.parse("ftp://127.0.0.1/", development)


async def test_numeric_host_spellings_are_checked_on_what_they_resolve_to() -> None:
    """`https://2130706433/` and `https://0x7f.1/` are 127.0.0.1 to getaddrinfo (no lookup
    on the network for a numeric host); the check is on the resolved address."""
    for url in ["https://2130706433/", "https://0x7f.1/", "https://017700000001/"]:
        target = guard.parse(url, POLICY)
        with pytest.raises(guard.Refused, match=r"127\.0\.0\.1, a loopback"):
            await guard.addresses(target, POLICY, guard.system_resolver)


def test_names_are_compared_in_their_ascii_lower_case_form() -> None:
    assert guard.parse("https://Hooks.Example:443/a/b?c=d", POLICY).host == "hooks.example"
    assert guard.parse("https://bücher.example/", POLICY).host == "xn--bcher-kva.example"


def test_the_schedule_and_ports_are_comma_lists_in_the_environment(monkeypatch) -> None:
    from pydantic import ValidationError

    from api.config import Settings

    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE_S", "1, 2.5,30")
    monkeypatch.setenv("WEBHOOK_ALLOWED_PORTS", "443,8443")
    settings = Settings()
    assert settings.webhook_retry_schedule_s == (1.0, 2.5, 30.0)
    assert settings.webhook_allowed_ports == (443, 8443)
    for name, value in [("WEBHOOK_RETRY_SCHEDULE_S", "5,-1"), ("WEBHOOK_ALLOWED_PORTS", "0")]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError, match=name.lower()):
            Settings()
        monkeypatch.delenv(name)
