"""The hive driver lease: exactly one process drives a hive; a dead driver's hive is taken over
once its lease has run out. Controlled time (`now`) on SQLite and Postgres."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from store_helpers import make_hive

from ruflo.errors import NotFound
from ruflo.model import HiveDriver, utcnow

LEASE = 20.0


def driver(hive_id: str, instance: str, pid: int = 100) -> HiveDriver:
    now = utcnow()
    return HiveDriver(hive_id=hive_id, instance=instance, host="box", pid=pid,
                      driving_since=now, driver_until=now)


def test_one_driver_until_its_lease_runs_out(store: Any) -> None:
    hive = make_hive(store)
    t0 = utcnow()
    assert store.hive_driver(hive.id) is None

    first = store.take_hive(driver(hive.id, "one", 1), lease_seconds=LEASE, now=t0)
    assert (first.instance, first.pid) == ("one", 1)
    assert first.driver_until == t0 + timedelta(seconds=LEASE)

    # A second process sees the live driver and does not take the hive.
    refused = store.take_hive(driver(hive.id, "two", 2), lease_seconds=LEASE,
                              now=t0 + timedelta(seconds=LEASE - 1))
    assert (refused.instance, refused.who) == ("one", "box:1")
    assert store.hive_driver(hive.id).instance == "one"

    # The driver renews: the lease moves on, its start stays.
    renewed = store.take_hive(driver(hive.id, "one", 1), lease_seconds=LEASE,
                              now=t0 + timedelta(seconds=10))
    assert renewed.instance == "one"
    assert renewed.driver_until == t0 + timedelta(seconds=10 + LEASE)
    assert renewed.driving_since == first.driving_since
    still = store.take_hive(driver(hive.id, "two", 2), lease_seconds=LEASE,
                            now=t0 + timedelta(seconds=LEASE + 1))
    assert still.instance == "one", "the renewal counts, not the first take"

    # The driver died (no renewal): once its lease has run out the other takes over.
    taken = store.take_hive(driver(hive.id, "two", 2), lease_seconds=LEASE,
                            now=t0 + timedelta(seconds=10 + LEASE))
    assert (taken.instance, taken.pid) == ("two", 2)
    assert taken.driving_since == t0 + timedelta(seconds=10 + LEASE)
    # The old driver, back from a stall, has lost it: its renewal answers the new driver.
    late = store.take_hive(driver(hive.id, "one", 1), lease_seconds=LEASE,
                           now=t0 + timedelta(seconds=11 + LEASE))
    assert late.instance == "two"


def test_release_only_by_the_driver(store: Any) -> None:
    hive = make_hive(store)
    store.take_hive(driver(hive.id, "one"), lease_seconds=LEASE)
    assert store.release_hive(hive.id, "two") is False
    assert store.hive_driver(hive.id).instance == "one"
    assert store.release_hive(hive.id, "one") is True
    assert store.hive_driver(hive.id) is None
    assert store.take_hive(driver(hive.id, "two"), lease_seconds=LEASE).instance == "two"


def test_an_unknown_hive_is_not_found(store: Any) -> None:
    with pytest.raises(NotFound):
        store.take_hive(driver("no-such-hive", "one"), lease_seconds=LEASE)
    assert store.hive_driver("no-such-hive") is None


def test_racing_takers_one_wins(store: Any) -> None:
    """Many threads (own connections) take one free hive at once: exactly one wins and all of
    them agree on who."""
    hive = make_hive(store)
    start = threading.Barrier(8)
    answers: dict[str, str] = {}

    def take(n: int) -> None:
        start.wait()
        answers[f"p{n}"] = store.take_hive(driver(hive.id, f"p{n}", n),
                                           lease_seconds=LEASE).instance

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = set(answers.values())
    assert len(winners) == 1, answers
    assert winners == {store.hive_driver(hive.id).instance}
