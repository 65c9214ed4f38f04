"""Per-action policies: whether an agent's action (a tool call, a merge) runs, waits for a person
or is refused. `decide_action` is the one pure function that decides; `parse_actions` reads and
validates the `actions:` block of a workload, an org file, a hive's config or the API.
Depends on ruflo.errors and the `regex` library (a rule's regex runs with a time limit).

A policy maps an action to a decision (`allow`, `ask`, `deny`), or to a default plus rules that
match the action's subject (the command of run_command, the path of read/write/edit, the key of a
memory note, the task branch of a merge). The first rule that matches wins, looked up in this
order: the agent's rules, the hive's rules, the safe defaults (SAFE_RULES: destructive commands
ask); then the agent's default for the action, the hive's, and finally `allow`.

Rules come from hive owners, and a regex can take exponential time on a crafted subject, so each
runs with a time limit (REGEX_SECONDS); one that runs out asks a person (a deny rule denies)
rather than hold up the process that decides.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import regex as safe_regex

from ruflo.errors import PolicyError

__all__ = ["ACTION_OF_TOOL", "SAFE_RULES", "Action", "ActionPolicy", "ActionRule", "Decision",
           "Verdict", "decide_action", "parse_actions", "policy_json"]

E = TypeVar("E", bound=enum.StrEnum)

REGEX_SECONDS = 0.05
"""The time one rule's regex may take on one subject."""
MAX_PATTERN = 1000
"""The longest pattern a rule may have (characters)."""


class Action(enum.StrEnum):
    """What an agent may do, as a policy names it."""

    READ = "read"
    """read_file, list_files, search_text; subject: the path."""
    WRITE = "write"
    """write_file; subject: the path."""
    EDIT = "edit"
    """edit_file; subject: the path."""
    RUN_COMMAND = "run_command"
    """A shell command; subject: the command line."""
    POST_SUBTASKS = "post_subtasks"
    """Splitting the task into subtasks on the board; subject: their titles."""
    MEMORY = "memory"
    """memory_store and memory_search; subject: the note's key or the query."""
    MERGE = "merge"
    """Git isolation: merging a finished task's branch into the hive's integration branch;
    subject: the task branch."""


class Decision(enum.StrEnum):
    ALLOW = "allow"
    ASK = "ask"
    """Stop before the action until a person approves or rejects it."""
    DENY = "deny"
    """Refuse at once; the model reads a tool error."""


ACTION_OF_TOOL: dict[str, Action] = {
    "read_file": Action.READ, "list_files": Action.READ, "search_text": Action.READ,
    "write_file": Action.WRITE, "edit_file": Action.EDIT, "run_command": Action.RUN_COMMAND,
    "post_subtasks": Action.POST_SUBTASKS, "memory_store": Action.MEMORY,
    "memory_search": Action.MEMORY,
}
"""The built-in agent's tools that a policy governs; the others (complete, abstain, delegate,
escalate) only end the attempt and always run."""


@dataclass(frozen=True, slots=True)
class ActionRule:
    """A decision for the subjects that match: `glob` (shell-style, on the whole subject or, for
    a command, on any part of it between `;`, `&&`, `||`, `|` or a newline) or `regex`
    (searched anywhere in the subject)."""

    decision: Decision
    glob: str | None = None
    regex: str | None = None
    why: str = ""
    """Shown to the person asked (safe defaults say what they guard against)."""

    def matches(self, subject: str) -> bool:
        """Whether the rule matches; TimeoutError when its regex ran out of time."""
        if self.regex is not None:
            return safe_regex.search(self.regex, subject, timeout=REGEX_SECONDS) is not None
        assert self.glob is not None
        parts = [subject, *(p.strip() for p in _SEPARATORS.split(subject))]
        return any(fnmatch.fnmatchcase(part, self.glob) for part in parts if part)

    def describe(self) -> str:
        pattern = f"regex {self.regex!r}" if self.regex is not None else f"pattern {self.glob!r}"
        return f"{pattern}{f' ({self.why})' if self.why else ''}"


_SEPARATORS = re.compile(r"\s*(?:;|&&|\|\||\||\n)\s*")


@dataclass(frozen=True, slots=True)
class ActionPolicy:
    """One level's policy (a hive's or an agent's): per action, a default and rules."""

    defaults: Mapping[Action, Decision] = field(default_factory=dict)
    rules: Mapping[Action, tuple[ActionRule, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.defaults and not self.rules


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `decide_action` decided and why, in words a person reads."""

    decision: Decision
    reason: str


def _safe(regex: str, why: str) -> ActionRule:
    return ActionRule(Decision.ASK, regex=regex, why=why)


SAFE_RULES: tuple[ActionRule, ...] = (
    _safe(r"\brm\b(?=[^;&|\n]*\s(?:-[a-zA-Z]*[rR]|--recursive\b))"
          r"(?=[^;&|\n]*\s(?:-[a-zA-Z]*f|--force\b))",
          "rm -rf: deletes a tree without asking"),
    _safe(r"\bgit\s+push\b.*(?:\s--force(?:-with-lease)?\b|\s-f\b|\s\+\S)",
          "git push --force: rewrites a shared branch"),
    _safe(r"\bgit\s+reset\s+(?:.*\s)?--hard\b", "git reset --hard: drops uncommitted work"),
    _safe(r"\bgit\s+clean\s+(?:.*\s)?-[a-zA-Z]*f", "git clean -f: deletes untracked files"),
    _safe(r"(?:^|[;&|\s])dd\s+.*\bof=", "dd of=: writes raw bytes over a file or device"),
    _safe(r"\bmkfs(?:\.\w+)?\b", "mkfs: formats a file system"),
    _safe(r"\bchmod\s+(?:-\S+\s+)*-[a-zA-Z]*R[a-zA-Z]*\s+(?:\S+\s+)*(?:0?777|a\+rwx)\s+/",
          "chmod -R 777 /...: opens a whole tree to everyone"),
    _safe(r"\b(?:curl|wget)\b[^|]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b",
          "curl | sh: runs a script fetched from the network"),
    _safe(r">\s*/dev/(?:sd|nvme|hd|vd)", "> /dev/sdX: overwrites a disk"),
)
"""Destructive command patterns that ask unless a policy's own rule says otherwise (docs/
approvals.md lists them)."""


def decide_action(action: Action, subject: str, *, hive: ActionPolicy,
                  agent: ActionPolicy) -> Verdict:
    """Decide one action: the first matching rule of the agent, the hive, then the safe defaults
    (commands only); else the agent's default for the action, the hive's, else allow."""
    layers: list[tuple[str, tuple[ActionRule, ...]]] = [
        ("the agent's rule", agent.rules.get(action, ())),
        ("the hive's rule", hive.rules.get(action, ())),
    ]
    if action is Action.RUN_COMMAND:
        layers.append(("a safe default", SAFE_RULES))
    for who, rules in layers:
        for rule in rules:
            what = f"({rule.why})" if rules is SAFE_RULES else rule.describe()
            try:
                matched = rule.matches(subject)
            except TimeoutError:
                decision = Decision.DENY if rule.decision is Decision.DENY else Decision.ASK
                return Verdict(decision, f"{who} {what} ran out of time ({REGEX_SECONDS:g} s) "
                                         f"on this {action} subject, so it says {decision}")
            if matched:
                return Verdict(rule.decision, f"{who} {what} says {rule.decision}")
    for who, policy in (("the agent's", agent), ("the hive's", hive)):
        if action in policy.defaults:
            decision = policy.defaults[action]
            return Verdict(decision, f"{who} policy for {action} says {decision}")
    return Verdict(Decision.ALLOW, f"{action} is allowed by default")


def parse_actions(raw: object, where: str) -> ActionPolicy:
    """Read an `actions:` block: {action: decision} or {action: {default: decision, rules: [{glob
    | regex: pattern, decision: decision}]}}. Raises PolicyError naming `where` and every problem
    (at most five), saying nothing was changed."""
    if raw is None:
        return ActionPolicy()
    problems: list[str] = []
    defaults: dict[Action, Decision] = {}
    rules: dict[Action, tuple[ActionRule, ...]] = {}
    if not isinstance(raw, Mapping):
        problems.append(f"expected a mapping of action to allow|ask|deny, not "
                        f"{type(raw).__name__}")
        raw = {}
    for name, value in raw.items():
        action = _enum(Action, name, f"{name!r}", problems)
        if action is None:
            continue
        if isinstance(value, str):
            decision = _enum(Decision, value, f"{action}", problems)
            if decision is not None:
                defaults[action] = decision
            continue
        if not isinstance(value, Mapping):
            problems.append(f"{action}: expected allow|ask|deny or a mapping with default and "
                            f"rules, not {type(value).__name__}")
            continue
        for key in sorted(set(value) - {"default", "rules"}, key=str):
            problems.append(f"{action}: unknown key {key!r} (expected default, rules)")
        if "default" in value:
            decision = _enum(Decision, value["default"], f"{action}.default", problems)
            if decision is not None:
                defaults[action] = decision
        listed = value.get("rules", [])
        if not isinstance(listed, list):
            problems.append(f"{action}.rules: expected a list of rules")
            continue
        read = [_rule(item, f"{action}.rules[{i}]", problems) for i, item in enumerate(listed)]
        rules[action] = tuple(r for r in read if r is not None)
    if problems:
        head = f"{where}: actions: {len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise PolicyError(head + "".join(f"\n  - {p}" for p in problems[:5])
                          + "\nnothing was changed")
    return ActionPolicy(defaults=defaults, rules={a: r for a, r in rules.items() if r})


def _enum(kind: type[E], value: object, where: str, problems: list[str]) -> E | None:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        noun = "action" if kind is Action else "decision"
        problems.append(f"{where}: unknown {noun} {value!r} (expected one of: {choices})")
        return None


def _rule(item: object, where: str, problems: list[str]) -> ActionRule | None:
    if not isinstance(item, Mapping):
        problems.append(f"{where}: expected a mapping with glob or regex, and decision")
        return None
    unknown = sorted(set(item) - {"glob", "regex", "decision", "why"}, key=str)
    if unknown:
        problems.append(f"{where}: unknown key {unknown[0]!r} (expected glob or regex, "
                        "decision, why)")
        return None
    glob, regex = item.get("glob"), item.get("regex")
    if (glob is None) == (regex is None):
        problems.append(f"{where}: give exactly one of glob or regex")
        return None
    pattern = glob if glob is not None else regex
    if not isinstance(pattern, str) or not pattern:
        problems.append(f"{where}: the pattern must be a non-empty string")
        return None
    if len(pattern) > MAX_PATTERN:
        problems.append(f"{where}: the pattern has {len(pattern)} characters, more than "
                        f"{MAX_PATTERN}")
        return None
    if regex is not None:
        try:
            safe_regex.compile(pattern)
        except safe_regex.error as error:
            problems.append(f"{where}: regex {pattern!r} does not compile ({error})")
            return None
    decision = _enum(Decision, item.get("decision"), f"{where}.decision", problems)
    why = item.get("why", "")
    if not isinstance(why, str):
        problems.append(f"{where}.why: expected text")
        return None
    if decision is None:
        return None
    return ActionRule(decision, glob=glob, regex=regex, why=why)


def policy_json(policy: ActionPolicy) -> dict[str, object]:
    """The policy as an `actions:` block (what parse_actions reads back)."""
    out: dict[str, object] = {}
    for action in Action:
        default = policy.defaults.get(action)
        rules = policy.rules.get(action, ())
        if not rules:
            if default is not None:
                out[action.value] = default.value
            continue
        block: dict[str, object] = {"rules": [
            {("regex" if r.regex is not None else "glob"): r.regex or r.glob,
             "decision": r.decision.value, **({"why": r.why} if r.why else {})} for r in rules]}
        if default is not None:
            block["default"] = default.value
        out[action.value] = block
    return out
