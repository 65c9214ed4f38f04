"""A writer killed with SIGKILL at random points loses no committed event and leaves no gap."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from store_helpers import make_hive

from ruflo.store import open_store

WRITER = textwrap.dedent("""
    import sys
    from ruflo.store import open_store
    store = open_store(sys.argv[1])
    print("open", flush=True)
    while True:
        event = store.append_event(sys.argv[2], "tool_call", data={"pad": "x" * 200})
        print(event.seq, flush=True)
""")


@pytest.mark.slow
@pytest.mark.integration
def test_sigkill_loses_no_committed_event(store_url: str) -> None:
    store = open_store(store_url)
    hive = make_hive(store)
    base = store.last_seq(hive.id)
    store.close()
    rng = random.Random(20)
    printed: list[int] = []
    for _ in range(20):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, store_url, hive.id],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "open"
        time.sleep(rng.uniform(0.0, 0.15))
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate(timeout=30)
        # Only whole lines count: a seq is printed after its commit returned.
        printed += [int(line) for line in out.split("\n")[:-1] if line.strip()]

        reopened = open_store(store_url)
        try:
            last = reopened.last_seq(hive.id)
            seqs = [e.seq for e in reopened.events(hive.id, after_seq=base)]
        finally:
            reopened.close()
        assert seqs == list(range(base + 1, last + 1)), "no gap in the sequence"
        assert not printed or printed[-1] <= last, "every printed seq is stored"
        assert set(printed) <= set(seqs)
    assert len(printed) > 20
