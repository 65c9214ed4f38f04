"""Presets for the agent CLIs people run as hive agents — `adapter: claude-code | codex |
gemini-cli | opencode | aider` — and the registry that finds one by adapter. Depends on the
process adapter (agents.process) and the core model.

Each preset lives in its own module (`claude_code`, `codex`, ...) exposing `PRESET`; a module
not in this build makes its adapter a clear configuration error.
"""

from __future__ import annotations

import importlib

from ruflo.agents.presets.base import Preset, Reader, Setup, find_program
from ruflo.errors import ConfigError
from ruflo.model import AGENT_CLIS, AdapterKind

__all__ = ["PRESET_MODULES", "Preset", "Reader", "Setup", "find_program", "known_presets",
           "preset_for"]

PRESET_MODULES = {
    AdapterKind.CLAUDE_CODE: "claude_code",
    AdapterKind.CODEX: "codex",
    AdapterKind.GEMINI_CLI: "gemini_cli",
    AdapterKind.OPENCODE: "opencode",
    AdapterKind.AIDER: "aider",
}
"""The module of each agent CLI's preset, under ruflo.agents.presets."""

assert set(PRESET_MODULES) == AGENT_CLIS


def preset_for(adapter: AdapterKind | str) -> Preset:
    """The preset of an agent CLI adapter (ConfigError, in one line, for any other)."""
    try:
        kind = AdapterKind(adapter)
        module = PRESET_MODULES[kind]
    except (ValueError, KeyError):
        names = ", ".join(k.value for k in PRESET_MODULES)
        raise ConfigError(f"{adapter!s} is not an agent CLI ruflo knows; choose one of "
                          f"{names}; nothing was run") from None
    try:
        loaded = importlib.import_module(f"ruflo.agents.presets.{module}")
    except ModuleNotFoundError as error:
        if error.name != f"ruflo.agents.presets.{module}":
            raise
        raise ConfigError(f"this ruflo has no preset for {kind.value} yet; run it with "
                          "`adapter: process` and its command; nothing was run") from None
    preset: Preset = loaded.PRESET
    return preset


def known_presets() -> list[Preset]:
    """The presets this build has, in the order of PRESET_MODULES."""
    found = []
    for kind in PRESET_MODULES:
        try:
            found.append(preset_for(kind))
        except ConfigError:
            continue
    return found
