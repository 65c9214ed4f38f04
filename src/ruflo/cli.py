"""The `ruflo` command. Each sub-command lives in `ruflo.commands.<name>` and is imported only
when it is called, so `ruflo --help` stays fast: nothing heavy is imported at module level.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module under ruflo.commands, one-line help). A module exposes `app`, a typer.Typer.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "Check settings, store, gateway and keys; print the boot trace."),
    "rvf": ("rvf", "Import or export upstream ruvocal RVF files."),
    "gateway": ("gateway", "Gateway tools: run the ScriptedGateway, list models."),
    "shell": ("shell", "Reconcile the shell's declared tool inventory."),
    "notify": ("notify", "Send a test notification through a configured sender."),
    "memory": ("memory", "Store, get, search, list, delete, export and import memory notes."),
    "simulate": ("simulate", "Run a workload through a policy on a virtual clock."),
    "serve": ("serve", "Run the web server: chat API, hive API, probes and pages."),
    "token": ("token", "Create, list and revoke bearer tokens for the server."),
    "orchestrate": ("orchestrate", "Run a hive on an objective through the gateway, live."),
    "hive": ("hive", "List, show, pause, resume and cancel stored hives."),
    "task": ("task", "Post, list, show and cancel tasks on a hive's board."),
    "approval": ("approval", "List, approve and reject what hives wait on (budget overrides...)."),
    "worker": ("worker", "Host agent loops of hives in a shared Postgres (many machines)."),
    "mcp": ("mcp", "Serve the hive tools to MCP clients (Claude Code, Codex) over stdio or HTTP."),
    "compare": ("compare", "Run workloads through several modes and report which one won what."),
    "demo": ("demo", "Compare the modes on the built-in workloads, then serve the UI."),
}

QUICK: dict[str, str] = {"memory": "memory_quick"}
"""name -> module under ruflo.commands whose `run(args) -> int | None` serves that command's
everyday calls without typer (`ruflo memory store/search` must answer within 250 ms)."""

USAGE = "Usage: ruflo [--version] [-h|--help] COMMAND [ARGS]..."


def _version() -> str:
    from ruflo import __version__

    return __version__


def _print_help() -> None:
    width = max(len(name) for name in COMMANDS) + 2
    lines = [USAGE, "",
             "  ruflo: a swarm orchestrator for LLM agents, with a company mode beside it.", "",
             "Commands:"]
    lines += [f"  {name.ljust(width)}{text}" for name, (_, text) in sorted(COMMANDS.items())]
    lines += ["", "Run `ruflo COMMAND --help` for a command's options. RUFLO_DEBUG=1 shows tracebacks."]
    print("\n".join(lines))


def run(argv: list[str]) -> int:
    """Dispatch to one sub-command in typer's standalone mode (it owns help, usage errors and
    exit codes); a RufloError is a message for a person: one line, no stack trace."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        _print_help()
        return 0
    if argv[0] == "--version":
        print(f"ruflo {_version()}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"{USAGE}\nerror: no such command {name!r}; `ruflo --help` lists them.",
              file=sys.stderr)
        return 2

    import logging

    from ruflo.errors import RufloError

    # Warnings from ruflo's modules reach the terminal as plain lines; retry chatter from
    # libraries does not (ruflo's own errors say how many attempts were made).
    from ruflo.telemetry import logs

    logs.configure(logging.WARNING, "%(message)s")  # JSON lines with RUFLO_LOG_FORMAT=json
    logging.getLogger("stamina").setLevel(logging.ERROR)

    try:
        if name in QUICK:
            # The everyday calls of a few commands skip typer (and pydantic) altogether;
            # `run` answers None for anything it does not plainly recognise.
            code = importlib.import_module(f"ruflo.commands.{QUICK[name]}").run(argv[1:])
            if code is not None:
                return int(code)
        import typer.main

        module = importlib.import_module(f"ruflo.commands.{COMMANDS[name][0]}")
        command = typer.main.get_command(module.app)
        command.main(args=argv[1:], prog_name=f"ruflo {name}", standalone_mode=True)
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except RufloError as error:
        if os.environ.get("RUFLO_DEBUG") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def main() -> None:
    raise SystemExit(run(sys.argv[1:]))
