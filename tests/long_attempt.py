"""A long scripted attempt of the built-in agent, shared by the resume tests and benches
(bench/resume.py, bench/prompt_prefix.py put this folder on their path): turns that write, read
and edit files, an optional command that counts its runs in a file outside the workspace and
waits to be released, and a last turn that completes.

The rules match on the turn number only (1 + the assistant messages in the request), so a
resumed attempt, whose requests carry the turns from its journal, meets the same rules.
"""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path
from typing import Any

FILLER = "Notes on this step: the change keeps the module's public names and its tests."


def part(turn: int) -> str:
    return f"part{turn}.txt"


def long_rules(turns: int, *, command_turn: int | None = None, counter: Path | None = None,
               release: Path | None = None, hold_turn: int | None = None) -> list[dict[str, Any]]:
    """Rules for an attempt of `turns` model calls: turn k writes part<k>.txt when k % 3 == 1,
    reads the file written a turn before when k % 3 == 2, edits the one written two turns
    before when k % 3 == 0; `command_turn` instead runs a command that appends a line to
    `counter` and waits until `release` exists; the last turn completes. `hold_turn`'s answer
    waits for the gate "held" (open_gate)."""
    rules: list[dict[str, Any]] = []
    for turn in range(1, turns):
        if turn == command_turn:
            assert counter is not None
            assert release is not None
            command = (f"echo ran >> {shlex.quote(str(counter))}; "
                       f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.05; done; "
                       "echo released")
            call = {"name": "run_command", "arguments": {"command": command, "timeout": 110}}
        elif turn % 3 == 1:
            call = {"name": "write_file", "arguments": {
                "path": part(turn), "content": f"part {turn}\n{FILLER}\n"}}
        elif turn % 3 == 2:
            call = {"name": "read_file", "arguments": {"path": part(turn - 1)}}
        else:
            call = {"name": "edit_file", "arguments": {
                "path": part(turn - 2), "old": f"part {turn - 2}\n",
                "new": f"part {turn - 2} checked\n"}}
        rule: dict[str, Any] = {"name": f"turn-{turn}", "match": {"turn": turn},
                                "reply": {"content": f"Step {turn}.", "tool_calls": [call]}}
        if turn == hold_turn:
            rule["hold"] = "held"
        rules.append(rule)
    rules.append({"name": "complete", "match": {"turn": turns}, "reply": {"tool_calls": [
        {"name": "complete", "arguments": {"result": f"did {turns - 1} steps"}}]}})
    return rules


def written_parts(turns: int, *, command_turn: int | None = None) -> dict[str, str]:
    """The files an attempt of `long_rules(turns, ...)` leaves, with their text."""
    files: dict[str, str] = {}
    for turn in range(1, turns):
        if turn == command_turn:
            continue
        if turn % 3 == 1:
            files[part(turn)] = f"part {turn}\n{FILLER}\n"
        elif turn % 3 == 0 and part(turn - 2) in files:
            files[part(turn - 2)] = files[part(turn - 2)].replace(
                f"part {turn - 2}\n", f"part {turn - 2} checked\n", 1)
    return files


def prompt_text(request: dict[str, Any], *, marks: bool = True) -> str:
    """A request's prompt as a provider reads it, in order: the tools, then every message, each
    in the order of its keys on the wire; without `marks`, cache breakpoints left out
    (Anthropic's cache does not compare them)."""
    messages = request["messages"] if marks else json.loads(
        json.dumps(request["messages"]), object_hook=lambda o: {
            k: v for k, v in o.items() if k != "cache_control"})
    return json.dumps({"tools": request.get("tools") or []}) + "".join(
        json.dumps(message) for message in messages)


def common_prefixes(requests: list[dict[str, Any]], *,
                    marks: bool = True) -> list[tuple[int, int, int]]:
    """For each request after the first: (bytes of the request before, bytes of this one, bytes
    of this one that are a byte-identical prefix shared with the one before)."""
    found: list[tuple[int, int, int]] = []
    for before, after in itertools.pairwise(requests):
        a = prompt_text(before, marks=marks).encode()
        b = prompt_text(after, marks=marks).encode()
        common = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            common += 1
        found.append((len(a), len(b), common))
    return found


def prefix_shares(requests: list[dict[str, Any]]) -> list[float]:
    """For each request after the first: the share of its prompt (bytes) that is a
    byte-identical prefix of the one before (what a prompt cache can reuse; the rest is the
    newest turn, or whatever changed)."""
    return [common / after for _, after, common in common_prefixes(requests)]
