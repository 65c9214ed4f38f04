"""Forward auth refuses user headers on connections made inside the server's own network
namespace: in a pod, the shell container can reach the server at the pod's own address (inside
the trusted pod CIDR), and NetworkPolicy does not apply within a pod. Over real HTTP, with the
server listening on every address and this machine's own non-loopback address trusted."""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from server_harness import Served

from ruflo.server.auth import (
    OWN_ADDRESS_REFUSAL,
    Address,
    Authenticator,
    Unauthenticated,
    from_this_machine,
    ip_of,
    is_own_address,
    trust_notice,
)

ALICE = {"X-authentik-username": "alice"}


def ip(text: str) -> Address:
    address = ip_of(text)
    assert address is not None, text
    return address


def own_address() -> str:
    """This machine's non-loopback IPv4 address: the source the kernel picks for an outside
    destination (a UDP connect sends nothing). The pod's IP plays this part in a cluster."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))
        except OSError as error:
            pytest.skip(f"this machine has no route off loopback ({error}), so no own "
                        "non-loopback address to connect from")
        address = str(probe.getsockname()[0])
    if ip(address).is_loopback:
        pytest.skip(f"this machine's outward address is {address}, not a non-loopback one")
    return address


def client(url: str, source: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source) if source else None
    return httpx.Client(base_url=url, transport=transport, timeout=10)


@pytest.fixture
def pod(make_server: Callable[..., Served]) -> tuple[Served, str, int]:
    """The server bound to 0.0.0.0 like the image, trusting this machine's network (the pod
    CIDR's stand-in) and loopback (a proxy sharing the host)."""
    address = own_address()
    served = make_server(auth="forward", bind="0.0.0.0",
                         trusted_proxies=f"{address}/24, 127.0.0.0/8",
                         extra_env={"RUFLO_ALLOWED_HOSTS": address})
    port = urlsplit(served.url).port
    assert port is not None
    return served, address, port


def test_headers_from_the_servers_own_address_are_refused_and_change_nothing(
        pod: tuple[Served, str, int]) -> None:
    served, address, port = pod
    refused = []
    # The shell's way in: the pod's own address, from the pod's own address.
    with client(f"http://{address}:{port}") as own:
        refused.append(own.post("/api/v2/conversations", json={}, headers=ALICE))
        refused.append(own.post("/api/v2/hives", json={"objective": "x"}, headers=ALICE))
        refused.append(own.get("/api/v2/user/settings", headers=ALICE))
        page = own.get("/hives", headers=ALICE)
    # Loopback to loopback, the same address at both ends.
    with client(f"http://127.0.0.1:{port}") as loopback:
        refused.append(loopback.post("/api/v2/conversations", json={}, headers=ALICE))
    # The own address as the source of a connection to loopback: only this machine can.
    with client(f"http://127.0.0.1:{port}", source=address) as sideways:
        refused.append(sideways.post("/api/v2/conversations", json={}, headers=ALICE))
    for answer in refused:
        assert answer.status_code == 401, answer.text
        assert answer.json() == {"error": "unauthenticated", "message": OWN_ADDRESS_REFUSAL}
    assert page.status_code == 401
    assert "from the server&#39;s own address are not trusted" in page.text
    assert served.store.list_conversations("alice") == []
    assert served.store.list_hives() == []


def test_a_proxy_at_another_address_is_still_believed(pod: tuple[Served, str, int]) -> None:
    served, _, port = pod
    with client(f"http://127.0.0.1:{port}", source="127.0.0.2") as proxy:
        created = proxy.post("/api/v2/conversations", json={}, headers=ALICE)
        assert created.status_code == 201, created.text
        listed = proxy.get("/api/v2/conversations", headers=ALICE).json()["conversations"]
    assert [c["id"] for c in listed] == [created.json()["conversationId"]]
    assert len(served.store.list_conversations("alice")) == 1


def test_an_own_address_is_refused_even_when_it_is_not_the_one_connected_to() -> None:
    """A namespace with two addresses (a second interface, a dual-homed pod): a process may
    bind one as its source and connect to the other; the kernel knows both as its own."""
    address = own_address()
    auth = Authenticator("forward", store=None,  # type: ignore[arg-type]
                         trusted_proxies=["0.0.0.0/0"])
    named = {"x-authentik-username": "alice"}  # the lower-case names a request's headers answer
    with pytest.raises(Unauthenticated, match="own address are not trusted"):
        auth.caller(address, named, server_host="198.51.100.7")
    # 198.51.100.7 (TEST-NET-2) is nobody's address here: a proxy there is believed.
    assert not is_own_address(ip("198.51.100.7"))
    assert auth.caller("198.51.100.7", named, server_host=address).name == "alice"
    assert is_own_address(ip(address))


def test_the_rule_case_by_case() -> None:
    assert from_this_machine(ip("10.42.0.10"), ip("10.42.0.10"))
    assert from_this_machine(ip("::ffff:10.42.0.10"), ip("10.42.0.10"))
    assert from_this_machine(ip("127.0.0.1"), ip("127.0.0.1"))
    assert from_this_machine(ip("198.51.100.7"), ip("127.0.0.1"))
    # A loopback peer other than the server's address: left to RUFLO_TRUSTED_PROXIES.
    assert not from_this_machine(ip("127.0.0.2"), ip("127.0.0.1"))
    # Another pod (not an address of this machine) reaching the pod's address: the proxy.
    assert not from_this_machine(ip("10.42.2.7"), ip("10.42.0.10"))
    assert not from_this_machine(ip("10.42.2.7"), None)


def test_the_boot_trace_says_whose_headers_are_believed() -> None:
    assert trust_notice("token", "10.0.0.0/8") == []
    (line,) = trust_notice("forward", "10.42.0.0/16")
    assert "10.42.0.0/16" in line
    assert "never from the server's own address" in line
    lines = trust_notice("forward", "10.42.0.0/16,127.0.0.0/8")
    assert "any process on this host" in lines[1]
    assert "127.0.0.0/8" in lines[1]
