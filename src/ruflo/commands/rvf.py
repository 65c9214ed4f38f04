"""`ruflo rvf import|export PATH`: move chat data between upstream ruvocal's RVF file and the
store. Imports only typer and the stdlib at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Import or export upstream ruvocal RVF files.", add_completion=False,
                  no_args_is_help=True)


@app.command("import")
def import_command(
        path: Annotated[Path, typer.Argument(help="An upstream ruvocal.rvf.json.")]) -> None:
    """Import conversations (with message trees), users and settings in one transaction."""
    from ruflo.rvf import import_rvf
    from ruflo.store import open_store

    store = open_store()
    try:
        counts = import_rvf(store, path)
    finally:
        store.close()
    typer.echo(f"imported {counts.summary()} from {path} into {store.url}")


@app.command("export")
def export_command(
        path: Annotated[Path, typer.Argument(help="Where to write the RVF 2.0 file.")]) -> None:
    """Write the store's conversations, users and settings as RVF 2.0, atomically."""
    from ruflo.rvf import export_rvf
    from ruflo.store import open_store

    store = open_store()
    try:
        counts = export_rvf(store, path)
    finally:
        store.close()
    typer.echo(f"exported {counts.summary()} to {path}")
