"""The MCP server: hive tools (create, post, claim, complete, release, board, memory, ledger) for
coding agents that speak the Model Context Protocol. Depends on the store, memory, policies and
the `mcp` SDK (loaded only when the server is built).
"""

from __future__ import annotations

from ruflo.mcp.desk import Desk

__all__ = ["Desk"]
