"""Who is asking, and whether they are an operator: no auth (one local user, loopback only, an
operator), forward auth from trusted proxies, or bearer tokens minted by `ruflo token create`.
Operators are the users named in RUFLO_OPERATORS and the bearers of tokens with the `operator`
scope. Forward auth never believes a connection from the server's own network namespace (the
pod, or the host): a process beside the server must not be able to act as the proxy. Depends on
the store protocol, the core model and stdlib.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import ipaddress
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ruflo.errors import ConfigError
from ruflo.model import LOCAL_USER
from ruflo.store.base import Store

FORWARD_HEADERS = ("x-authentik-username", "remote-user")
TOKEN_PREFIX = "rfl_"
OPERATOR_SCOPE = "operator"
SCOPES = (OPERATOR_SCOPE,)
"""The scopes a token may carry."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

OWN_ADDRESS_REFUSAL = ("user headers from the server's own address are not trusted: the "
                       "connection came from inside this pod or host, not from the proxy")


class AuthMode(enum.StrEnum):
    NONE = "none"
    FORWARD = "forward"
    TOKEN = "token"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a request."""

    name: str
    operator: bool
    """May define commands (process/http agents, verify) and change any hive."""


class Unauthenticated(Exception):
    """The request names no user we can trust; the message says why, for the caller."""

    def __init__(self, message: str, *, bearer: bool = False) -> None:
        super().__init__(message)
        self.bearer = bearer


def new_token() -> str:
    """A fresh bearer token: 32 random bytes, URL-safe, with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the store keeps of a token. A plain digest suffices: tokens are 256 random bits,
    so there is nothing to brute-force that a slow hash would protect."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_networks(text: str | Sequence[str] | None) -> tuple[Network, ...]:
    """RUFLO_TRUSTED_PROXIES: addresses or CIDRs, comma-separated (or already a list)."""
    if not text:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    networks: list[Network] = []
    for item in (part.strip() for part in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"RUFLO_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR; "
                              "the server did not start. Fix the list and start again.") from None
    return tuple(networks)


def trust_notice(mode: str, trusted_proxies: str | Sequence[str] | None) -> list[str]:
    """Boot-trace lines saying whose user headers forward auth believes (none in other modes)."""
    if str(mode).lower() != AuthMode.FORWARD.value:
        return []
    networks = parse_networks(trusted_proxies)
    lines = [f"forward auth: user headers believed from {', '.join(map(str, networks))} — never "
             "from the server's own address (a process in this pod or on this host cannot act "
             "as the proxy)"]
    loopback = [str(n) for n in networks if n.network_address.is_loopback]
    if loopback:
        lines.append(f"forward auth: RUFLO_TRUSTED_PROXIES names loopback ({', '.join(loopback)})"
                     ": any process on this host can send user headers from such an address; "
                     "list only your proxy's own addresses unless it shares this host")
    return lines


def is_loopback_host(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Turns a request's client address and headers into a user name, or refuses."""

    def __init__(self, mode: str, store: Store, *,
                 trusted_proxies: str | Sequence[str] | None = None,
                 operators: Sequence[str] = ()) -> None:
        try:
            self.mode = AuthMode(str(mode).lower())
        except ValueError:
            raise ConfigError(f"RUFLO_AUTH={mode!r} is not one of none, forward, token; "
                              "the server did not start.") from None
        self.store = store
        self.trusted = parse_networks(trusted_proxies)
        self.operators = frozenset(name.strip() for name in operators if name.strip())
        if self.mode is AuthMode.FORWARD and not self.trusted:
            raise ConfigError("RUFLO_AUTH=forward needs RUFLO_TRUSTED_PROXIES (the proxy "
                              "addresses whose user headers are believed); the server did "
                              "not start.")

    def user(self, client_host: str | None, headers: Mapping[str, str], *,
             server_host: str | None) -> str:
        """The user making the request. `headers` answers lower-case names."""
        return self.caller(client_host, headers, server_host=server_host).name

    def caller(self, client_host: str | None, headers: Mapping[str, str], *,
               server_host: str | None) -> Caller:
        """The user making the request and whether they are an operator. `client_host` is the
        TCP peer's address, `server_host` the local address of the accepted connection (ASGI
        scope["client"][0] and scope["server"][0]; None when unknown)."""
        if self.mode is AuthMode.NONE:
            return Caller(LOCAL_USER, operator=True)
        scopes: Sequence[str] = ()
        if self.mode is AuthMode.FORWARD:
            name = self._forwarded_user(client_host, server_host, headers)
        else:
            name, scopes = self._token_user(headers)
        if name == LOCAL_USER:
            # "local" owns the hives made outside the server (CLI, MCP, workers): a signed-in
            # user by that name would own them all.
            raise Unauthenticated(f"the user name {LOCAL_USER!r} is kept for this machine's own "
                                  "user and is not accepted from a proxy or a token; sign in "
                                  "under another name", bearer=self.mode is AuthMode.TOKEN)
        return Caller(name, operator=name in self.operators or OPERATOR_SCOPE in scopes)

    def _forwarded_user(self, client_host: str | None, server_host: str | None,
                        headers: Mapping[str, str]) -> str:
        peer = ip_of(client_host)
        if peer is None or not any(peer in network for network in self.trusted):
            raise Unauthenticated("this server trusts user headers only from its proxy, and "
                                  "the request did not come through it")
        if from_this_machine(peer, ip_of(server_host)):
            raise Unauthenticated(OWN_ADDRESS_REFUSAL)
        for name in FORWARD_HEADERS:
            value = headers.get(name, "").strip()
            if value:
                if len(value) > 200 or any(ord(c) < 32 for c in value):
                    raise Unauthenticated(f"the proxy sent an unusable {name} header")
                return value
        raise Unauthenticated("the proxy sent no X-authentik-username or Remote-User header")

    def _token_user(self, headers: Mapping[str, str]) -> tuple[str, Sequence[str]]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("send a bearer token (Authorization: Bearer ...); make one "
                                  "with `ruflo token create`", bearer=True)
        found = self.store.find_token(hash_token(token))
        if found is None:
            raise Unauthenticated("this bearer token is unknown or revoked", bearer=True)
        return str(found["user_id"]), tuple(found.get("scopes") or ())


def ip_of(host: str | None) -> Address | None:
    """An ASGI scope's host as an IP address (IPv4-mapped IPv6 as IPv4), or None if it is none."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def from_this_machine(peer: Address, server: Address | None) -> bool:
    """Whether a connection from `peer` to the server's `server` address was made inside the
    server's own network namespace (the pod's containers share one; so do a host's processes),
    where any process could claim to be the proxy.

    - The peer is the very address it connected to: a pod reaching its own IP, or 127.0.0.1
      reaching 127.0.0.1.
    - A loopback peer is otherwise left to RUFLO_TRUSTED_PROXIES: only an operator whose proxy
      shares the host lists loopback (the boot trace warns what that trusts).
    - A non-loopback peer that reached a loopback address, or that is one of this machine's own
      addresses, connected from here: a socket can bind its source to any own address.
    """
    if peer == server:
        return True
    if peer.is_loopback:
        return False
    if server is not None and server.is_loopback:
        return True
    return is_own_address(peer)


def is_own_address(address: Address) -> bool:
    """Whether `address` is assigned to this network namespace: the kernel lets a socket bind
    only its own addresses (EADDRNOTAVAIL otherwise). Asked on every call, so an address added
    later counts. Any other refusal counts as own, so a doubt refuses the headers (and a kernel
    set to bind foreign addresses, net.ipv4.ip_nonlocal_bind, refuses every proxy, not none)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError as error:
            return error.errno != errno.EADDRNOTAVAIL
    return True
