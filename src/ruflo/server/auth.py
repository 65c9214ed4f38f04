"""Who is asking, and whether they are an operator: no auth (one local user, loopback only, an
operator), forward auth from trusted proxies, or bearer tokens minted by `ruflo token create`.
Operators are the users named in RUFLO_OPERATORS and the bearers of tokens with the `operator`
scope. Depends on the store protocol, the core model and stdlib.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import secrets
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

    def user(self, client_host: str | None, headers: Mapping[str, str]) -> str:
        """The user making the request. `headers` answers lower-case names."""
        return self.caller(client_host, headers).name

    def caller(self, client_host: str | None, headers: Mapping[str, str]) -> Caller:
        """The user making the request and whether they are an operator."""
        if self.mode is AuthMode.NONE:
            return Caller(LOCAL_USER, operator=True)
        scopes: Sequence[str] = ()
        if self.mode is AuthMode.FORWARD:
            name = self._forwarded_user(client_host, headers)
        else:
            name, scopes = self._token_user(headers)
        if name == LOCAL_USER:
            # "local" owns the hives made outside the server (CLI, MCP, workers): a signed-in
            # user by that name would own them all.
            raise Unauthenticated(f"the user name {LOCAL_USER!r} is kept for this machine's own "
                                  "user and is not accepted from a proxy or a token; sign in "
                                  "under another name", bearer=self.mode is AuthMode.TOKEN)
        return Caller(name, operator=name in self.operators or OPERATOR_SCOPE in scopes)

    def _forwarded_user(self, client_host: str | None, headers: Mapping[str, str]) -> str:
        if not self._from_trusted_proxy(client_host):
            raise Unauthenticated("this server trusts user headers only from its proxy, and "
                                  "the request did not come through it")
        for name in FORWARD_HEADERS:
            value = headers.get(name, "").strip()
            if value:
                if len(value) > 200 or any(ord(c) < 32 for c in value):
                    raise Unauthenticated(f"the proxy sent an unusable {name} header")
                return value
        raise Unauthenticated("the proxy sent no X-authentik-username or Remote-User header")

    def _from_trusted_proxy(self, client_host: str | None) -> bool:
        if not client_host:
            return False
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        return any(address in network for network in self.trusted)

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
