"""The `ruflo` command. Each sub-command lives in `ruflo.commands.<name>` and is imported only
when it is called, so `ruflo --help` stays fast: nothing heavy is imported at module level.
"""

from __future__ import annotations

import importlib
import os
import click
import typer.main

# name -> (module under ruflo.commands, one-line help). A module exposes either `app`
# (a typer.Typer with sub-commands) or `command` (a single typer-decorated function's Typer).
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "Check settings, store, gateway and keys; print the boot trace."),
    "rvf": ("rvf", "Import or export upstream ruvocal RVF files."),
    "gateway": ("gateway", "Gateway tools: run the ScriptedGateway, list models."),
    "shell": ("shell", "Reconcile the shell's declared tool inventory."),
    "notify": ("notify", "Send a test notification through a configured sender."),
    "memory": ("memory", "Store, get, search, list, delete, export and import memory notes."),
    "simulate": ("simulate", "Run a workload through a policy on a virtual clock."),
}


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing comes from COMMANDS so that `ruflo --help` imports no sub-command.
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in sorted(COMMANDS.items())])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, text = COMMANDS[cmd_name]
        module = importlib.import_module(f"ruflo.commands.{module_name}")
        target = module.app if hasattr(module, "app") else module.command
        command = typer.main.get_command(target)
        command.help = command.help or text
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ruflo")
def cli() -> None:
    """ruflo: a swarm orchestrator for LLM agents, with a company mode beside it."""


def main() -> None:
    """Run the CLI. A RufloError is a message for a person: one line, no stack trace, unless
    RUFLO_DEBUG=1 asks for it."""
    from ruflo.errors import RufloError

    try:
        cli(prog_name="ruflo", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as error:
        error.show()
        raise SystemExit(error.exit_code) from None
    except click.exceptions.Exit as done:
        raise SystemExit(done.exit_code) from None
    except RufloError as error:
        if os.environ.get("RUFLO_DEBUG") == "1":
            raise
        click.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None
