"""`ruflo token create|list|revoke`: bearer tokens for RUFLO_AUTH=token. The store keeps only a
hash; the token is printed once. Imports only typer and stdlib at module level.
"""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Create, list and revoke bearer tokens for RUFLO_AUTH=token.",
                  no_args_is_help=True)


def _store() -> object:
    from ruflo.store import open_store

    return open_store()


@app.command()
def create(
    user: str = typer.Option(..., "--user", "-u", help="The user the token acts as."),
    name: str = typer.Option("", "--name", "-n", help="A label to recognise it by later."),
    scope: list[str] = typer.Option(  # noqa: B008
        [], "--scope", "-s", help="A scope to grant: 'operator' (may define commands and "
                                  "change any hive). Repeat for more."),
) -> None:
    """Mint a token for USER and print it once (only its hash is stored)."""
    from ruflo.errors import ConfigError
    from ruflo.model import LOCAL_USER, new_id
    from ruflo.server.auth import SCOPES, hash_token, new_token
    from ruflo.store.base import Store

    user = user.strip()
    if not user or len(user) > 200 or any(ord(c) < 32 for c in user):
        raise ConfigError("--user must be a non-empty name without control characters; "
                          "no token was created")
    if user == LOCAL_USER:
        raise ConfigError(f"--user {LOCAL_USER!r} is kept for this machine's own user (it owns "
                          "the hives made by the CLI) and the server refuses it; pick another "
                          "name; no token was created")
    scopes = sorted({part.strip().lower() for part in scope if part.strip()})
    unknown = [part for part in scopes if part not in SCOPES]
    if unknown:
        raise ConfigError(f"--scope {unknown[0]!r} is not a scope (known: {', '.join(SCOPES)}); "
                          "no token was created")
    store = _store()
    assert isinstance(store, Store)
    try:
        token = new_token()
        token_id = new_id()[:12]
        store.create_token(token_id=token_id, name=name or user, user_id=user,
                           token_hash=hash_token(token), scopes=scopes)
    finally:
        store.close()
    typer.echo(token)
    granted = f" with scope {', '.join(scopes)}" if scopes else ""
    typer.echo(f"token {token_id} for user {user!r}{granted} created; it is shown only now, "
               "keep it somewhere safe. Send it as 'Authorization: Bearer <token>'.", err=True)


@app.command("list")
def list_tokens(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List tokens (never the tokens themselves)."""
    from ruflo.store.base import Store

    store = _store()
    assert isinstance(store, Store)
    try:
        tokens = store.list_tokens()
    finally:
        store.close()
    rows = [{key: value for key, value in token.items() if key != "token_hash"}
            for token in tokens]
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        typer.echo("no tokens (make one with `ruflo token create --user NAME`)")
        return
    for row in rows:
        state = "revoked" if row.get("revoked_at") else "live"
        scopes = ",".join(row.get("scopes") or []) or "-"
        typer.echo(f"{row.get('id')}  {state:7}  user={row.get('user_id')}  scopes={scopes}  "
                   f"name={row.get('name')}  created={row.get('created_at')}")


@app.command()
def revoke(token_id: str = typer.Argument(..., help="The token's id (from `ruflo token list`).")
           ) -> None:
    """Revoke a token: requests bearing it are refused from now on."""
    from ruflo.store.base import Store

    store = _store()
    assert isinstance(store, Store)
    try:
        store.revoke_token(token_id)
    finally:
        store.close()
    typer.echo(f"token {token_id} revoked")
