"""How a live run behaves (`LiveParams`) and how a hive stands after one (`RunSummary`): plain
data shared by the engines, the CLI and the server. Depends on the model, ruflo.agents' limits
and the swarm's parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ruflo.agents import Limits
from ruflo.errors import ConfigError
from ruflo.model import JSON, Hive
from ruflo.policies.swarm import SwarmParams

__all__ = ["LiveParams", "RunSummary", "config_number"]


def config_number(config: JSON, key: str, default: float) -> float:
    """A number from a hive's config (`default` when absent); ConfigError for anything else."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"hive config {key!r} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class LiveParams:
    """How a live run behaves."""

    lease_seconds: float = 60.0
    """A claim's lease; the holder renews it every third of this while it works. A dead
    agent's task reopens at most this long after its last renewal."""
    time_unit: float = 10.0
    """Wall seconds per policy time unit (the simulator's effort unit): how fast stimulus
    grows and thresholds learn in real time."""
    poll_seconds: float = 1.0
    """How often the store is read for changes made by other processes (CLI, server): a store
    read, never a gateway call."""
    follow_interval: float = 0.0
    """Least seconds between two reads of the event log. 0 reads at every wake-up; a worker
    sharing a busy hive with others waits a little, so one read takes in the events of many
    notifications rather than one each."""
    seed: int = 0
    limits: Limits = field(default_factory=Limits)
    swarm: SwarmParams | None = None
    stop_on_pause: bool = True
    """`run` returns when the hive pauses (the CLI); False keeps waiting for a resume."""
    max_split_depth: int = 2
    """How many times a task may be split into subtasks, counting down from the objective."""
    probe_initial: float = 1.0
    """Seconds before the first look at a gateway that stopped answering (the hive paused
    "gateway unreachable"); each look that finds it still down doubles the wait..."""
    probe_max: float = 30.0
    """...up to this. A look is one GET of the model list: no tokens."""

    def __post_init__(self) -> None:
        if self.lease_seconds <= 0 or self.time_unit <= 0 or self.poll_seconds <= 0:
            raise ConfigError("live engine: lease_seconds, time_unit and poll_seconds must be "
                              "positive")
        if not 0 <= self.follow_interval < self.poll_seconds:
            raise ConfigError("live engine: follow_interval must be at least 0 and shorter "
                              "than poll_seconds")
        if not 0 < self.probe_initial <= self.probe_max:
            raise ConfigError("live engine: probe_initial must be positive and at most "
                              "probe_max")

    def probing(self, longest: float) -> LiveParams:
        """These params, looking at a down gateway as RUFLO_GATEWAY_PROBE_SECONDS says: first
        after a second (or `longest` if shorter), then up to `longest` apart."""
        return replace(self, probe_initial=min(1.0, longest), probe_max=longest)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a hive stands: what the CLI prints at the end and `hive show` prints any time."""

    hive: Hive
    counts: dict[str, int]
    objective_succeeded: bool
    tokens: int
    cost: float
    coordination_tokens: int
    calls: int

    def to_json(self) -> JSON:
        return {"hive_id": self.hive.id, "status": self.hive.status.value,
                "reason": self.hive.pause_reason, "tasks": self.counts,
                "objective_succeeded": self.objective_succeeded, "tokens": self.tokens,
                "cost": self.cost, "coordination_tokens": self.coordination_tokens,
                "calls": self.calls}
