"""The `cli` fixture: run `ruflo` as a subprocess against a ScriptedGateway (see cli_harness)."""

from __future__ import annotations

from cli_harness import cli

__all__ = ["cli"]
