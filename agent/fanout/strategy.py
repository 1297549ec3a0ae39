"""How a fan-out goes through its hosts: all at once, a canary first, or in rolling batches.

- `parallel`: every host in one batch, at most TAILNET_AGENT_FANOUT_CONCURRENCY at a time.
- `canary`: one host first; the others (one batch, like `parallel`) only if it succeeded.
- `rolling`: batches of `batch_size` hosts, one batch after the other; once more than
  `max_failures` hosts have failed, the batches left are not run.

A host counts as failed unless it ended `ok`: a command that failed or timed out, a host
that could not be reached, a call refused when it came to run (a limit, a policy that
changed). Hosts the plan already knows will not run (refused by the policy or the
catalog, offline in the tailnet) are in no batch: they are answered at once and never
stop a run. Destructive commands default to `canary`, others to `parallel`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from agent.errors import ConfigError

StrategyName = Literal["parallel", "canary", "rolling"]
STRATEGIES: tuple[StrategyName, ...] = ("parallel", "canary", "rolling")
ROLLING_SHARE = 10  # a rolling run's default batch: a tenth of the hosts (at least one)

T = TypeVar("T")


@dataclass(frozen=True)
class StrategyRequest:
    """What a caller asked for (run_on_hosts' strategy, batch_size, max_failures)."""

    name: str | None = None
    batch_size: int | None = None
    max_failures: int | None = None

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> StrategyRequest | None:
        """The request in a tool call's arguments; None when one of them has the wrong
        type (the tool's schema refuses such a call anyway)."""
        name, size, failures = (arguments.get(k) for k in ("strategy", "batch_size",
                                                          "max_failures"))
        if not (name is None or isinstance(name, str)) or not all(
                v is None or (isinstance(v, int) and not isinstance(v, bool))
                for v in (size, failures)):
            return None
        return cls(name, size, failures)

    def resolve(self, *, destructive: bool) -> Strategy:
        """The strategy this asks for (no name: rolling if a batch is described, else the
        command's default); raises ConfigError for a combination that means nothing."""
        name, size, failures = self.name, self.batch_size, self.max_failures
        if name is None:
            name = "rolling" if size is not None or failures is not None else (
                "canary" if destructive else "parallel")
        if name not in STRATEGIES:
            raise ConfigError(f"unknown strategy {name[:40]!r}: use parallel, canary or "
                              "rolling")
        if name != "rolling" and (size is not None or failures is not None):
            raise ConfigError(f"batch_size and max_failures apply to rolling runs, not to "
                              f"{name}: leave them out, or use strategy rolling")
        if size is not None and size < 1:
            raise ConfigError("batch_size must be at least 1")
        if failures is not None and failures < 0:
            raise ConfigError("max_failures must be 0 or more")
        return Strategy(name, size, failures or 0)


@dataclass(frozen=True)
class Strategy:
    name: StrategyName = "parallel"
    batch_size: int | None = None  # rolling: hosts per batch (None: a tenth of them)
    max_failures: int = 0  # rolling: failed hosts tolerated before it stops

    def size(self, hosts: int) -> int:
        """Hosts per batch for a run over `hosts` hosts (after a canary's first)."""
        if self.name != "rolling":
            return max(1, hosts)
        return self.batch_size or max(1, math.ceil(hosts / ROLLING_SHARE))

    @property
    def tolerated(self) -> int | None:
        """Failed hosts a run goes on after (None: it never stops)."""
        return {"parallel": None, "canary": 0, "rolling": self.max_failures}[self.name]

    def batches(self, hosts: Sequence[T]) -> list[list[T]]:
        """`hosts` in the batches they run in, in order."""
        if not hosts:
            return []
        if self.name == "canary":
            return [list(hosts[:1])] + ([list(hosts[1:])] if len(hosts) > 1 else [])
        size = self.size(len(hosts))
        return [list(hosts[at:at + size]) for at in range(0, len(hosts), size)]

    def describe(self, hosts: Sequence[str]) -> str:
        """One sentence for a confirmation: in what order `hosts` run, when it stops."""
        count = len(hosts)
        if count == 0:
            return f"{self.name}: no host to run on"
        if self.name == "canary" and count > 1:
            others = "the other host" if count == 2 else f"the other {count - 1}"
            return f"canary: {hosts[0]} first, then {others} only if it succeeded"
        if self.name == "rolling" and count > self.size(count):
            size = self.size(count)
            batches = math.ceil(count / size)
            return (f"rolling: {batches} batches of up to {size} host(s), one after the "
                    f"other, stopping once more than {self.max_failures} host(s) failed")
        if count == 1:
            return f"{self.name}: 1 host"
        # Parallel (or a run too small for its batches): nothing stops on a failure.
        return f"{self.name}: all {count} hosts together, whatever fails"

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name}
        if self.name == "rolling":
            data.update(batch_size=self.batch_size, max_failures=self.max_failures)
        return data
