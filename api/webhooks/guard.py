"""Where a webhook may point, and where a delivery may connect (server-side request forgery).

Outside development a webhook URL must be https, without credentials or a fragment, on an
allowed port (443 unless WEBHOOK_ALLOWED_PORTS says more), and its host must resolve only to
public addresses: loopback, private, link-local (169.254.0.0/16, the metadata server),
unique-local, site-local, multicast, shared, reserved and documentation ranges are refused, in
IPv4 and IPv6, including IPv4 addresses carried inside IPv6 ones (mapped, 6to4, NAT64, Teredo).
The check runs when the URL is set, again at every attempt, and once more as each connection
is opened (GuardedBackend), on the very address it connects to: a name that turns private
between the attempt's check and its connection (DNS rebinding) is refused too.

In development (ENVIRONMENT=development) http:// and any address are allowed, so a receiver on
the same machine can be tried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, in the resolver's order.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

MAX_URL_LENGTH = 2048
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class Refused(Exception):
    """A URL or an address a webhook may not use; the message says why, for its owner."""


@dataclass(frozen=True)
class Policy:
    """What is allowed: anything in development; else https, public addresses, these ports."""

    development: bool
    allowed_ports: frozenset[int] = frozenset({443})


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart: what to resolve, and where."""

    url: httpx.URL
    host: str  # ASCII (IDNA), as resolved and as the certificate must name it
    port: int


def parse(url: str, policy: Policy) -> Target:
    """Check a URL's form (not yet its addresses); Refused says what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise Refused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise Refused(f"the URL is not valid: {exc}") from None
    schemes = ("http", "https") if policy.development else ("https",)
    if parsed.scheme not in schemes:
        raise Refused(f"the URL must start with {' or '.join(s + '://' for s in schemes)}")
    if not host:
        raise Refused("the URL has no host")
    if parsed.userinfo:
        raise Refused("the URL may not carry credentials; verify the signature instead")
    if parsed.fragment:
        raise Refused("the URL may not have a #fragment (it is never sent)")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not policy.development and port not in policy.allowed_ports:
        allowed = ", ".join(str(p) for p in sorted(policy.allowed_ports))
        raise Refused(f"the URL's port must be {allowed}")
    literal = _literal(host)
    if literal is not None:
        _check(literal, policy)
    return Target(url=parsed, host=host.lower(), port=port)


def refusal(address: IPAddress, policy: Policy) -> str | None:
    """Why a delivery may not connect to this address (None: it may)."""
    if policy.development:
        return None
    for candidate in reversed(_carried(address)):  # what it carries says most
        kind = _non_public(candidate)
        if kind is not None:
            shown = f"{address} (carrying {candidate})" if candidate != address else str(address)
            return f"{shown}, {kind}"
    return None


async def addresses(target: Target, policy: Policy, resolver: Resolver) -> list[IPAddress]:
    """The addresses to connect to, all allowed; Refused when the host does not resolve or
    any of its addresses is not allowed (a name that mixes public and private ones is refused
    whole: the private one could be the one used)."""
    return await resolve_checked(target.host, target.port, policy, resolver)


async def resolve_checked(
    host: str, port: int, policy: Policy, resolver: Resolver
) -> list[IPAddress]:
    """`addresses` for a host and port."""
    literal = _literal(host)
    if literal is not None:
        _check(literal, policy)
        return [literal]
    try:
        found = await resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"{host} does not resolve ({_reason(exc)})") from None
    if not found:
        raise Refused(f"{host} does not resolve")
    for address in found:
        reason = refusal(address, policy)
        if reason is not None:
            raise Refused(f"{host} resolves to {reason}")
    return list(dict.fromkeys(found))


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The system's resolver (getaddrinfo, in the event loop's threads)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # a scope (fe80::1%eth0): link-local anyway
        found.append(ipaddress.ip_address(text))
    return found


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _check(address: IPAddress, policy: Policy) -> None:
    reason = refusal(address, policy)
    if reason is not None:
        raise Refused(f"the URL's address is {reason}")


def _carried(address: IPAddress) -> list[IPAddress]:
    """The address and any IPv4 address it carries (IPv4-mapped, 6to4, NAT64, Teredo)."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if any(address in network for network in NAT64):
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _non_public(address: IPAddress) -> str | None:
    """What kind of non-public address this is, or None for a public unicast one."""
    checks = (
        ("is_unspecified", "the unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (the metadata server's range)"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, kind in checks:
        if getattr(address, attribute):
            return kind
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "not a public address"
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return exc.strerror or "lookup failed"
    return type(exc).__name__


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens each connection to an address that passes the policy, resolved just then: the
    address connected to is the one checked (a second lookup could answer something else).
    A connection that is refused is an httpcore.ConnectError, as a refused port would be."""

    def __init__(
        self,
        policy: Policy,
        resolver: Resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            found = await resolve_checked(host, port, self._policy, self._resolver)
        except Refused as exc:
            raise httpcore.ConnectError(f"refused: {exc}") from None
        last: httpcore.ConnectError | None = None
        for address in found:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None  # resolve_checked() returns at least one
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    policy: Policy,
    resolver: Resolver,
    *,
    limits: httpx.Limits,
    inner: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncHTTPTransport:
    """httpx's transport, its connection pool opening connections through GuardedBackend.

    Connections are pooled by host and port, as usual: a kept-alive connection is reused only
    for its own host, whose certificate it verified; TLS checks the host's name (the URL keeps
    it). httpx builds its pool without a network backend argument, so the pool is replaced
    (httpx is pinned; tests/api/test_webhook_guard.py checks this path through the transport).
    """
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False, retries=0)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        retries=0,
        network_backend=GuardedBackend(policy, resolver, inner),
    )
    return transport
