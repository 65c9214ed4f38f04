"""The inside half of the model relay (agents/relay.py), run in the sandbox as a bare script:
`python -I -S forwarder.py PORT=SOCKET ... -- COMMAND...`. Standard library only (ruflo is not
importable there), and only its quick-to-import modules: it starts in front of every agent run.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError:
            client.close()
            upstream.close()
            continue
        threading.Thread(target=_copy, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_copy, args=(upstream, client), daemon=True).start()


def main(args: list[str]) -> None:
    """Open the listeners, leave a forwarder behind (its own process, adopted by the sandbox's
    init, which ends it with the sandbox) and become the agent's command."""
    cut = args.index("--")
    listeners: list[tuple[socket.socket, str]] = []
    for spec in args[:cut]:
        port, _, path = spec.partition("=")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(64)
        listeners.append((listener, path))
    command = args[cut + 1:]
    child = os.fork()
    if child == 0:
        if os.fork() != 0:
            os._exit(0)
        # The forwarder outlives a SIGTERM to the group so the agent keeps the model during its
        # grace period; the sandbox's end (or SIGKILL) ends it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for listener, path in listeners:
            threading.Thread(target=_serve, args=(listener, path), daemon=True).start()
        threading.Event().wait()
    os.waitpid(child, 0)
    for listener, _ in listeners:
        listener.close()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
