"""What ``torch.compile`` did in a run: time of the first (compiling) step, graphs, breaks, recompilations.

Dynamo's process-wide counters are read before and after, so that a compiled run reports its own
graphs: a graph break splits the model into more graphs (each a Python round trip per step), and a
recompilation (a new input shape or a guard that failed) costs another compile in the middle of a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def dynamo_counters() -> dict[str, int]:
    """``{"graphs": compiled graphs, "graph_breaks": breaks}`` so far in this process."""
    from torch._dynamo.utils import counters

    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }


@dataclass
class CompileWatch:
    """Counters of a compiled training loop, from its creation on.

    Example:
        >>> watch = CompileWatch()
        >>> record = watch.after_first_step(12.5)
        >>> record["first_step_seconds"], watch.summary()["recompilations"]
        (12.5, 0)
    """

    start: dict[str, int] = field(default_factory=dynamo_counters)
    first_step: dict[str, int] | None = None

    def _since_start(self) -> dict[str, int]:
        now = dynamo_counters()
        return {key: now[key] - self.start[key] for key in now}

    def after_first_step(self, seconds: float) -> dict[str, float | int]:
        """The record of the first step (which compiled the model): its time and the graphs made."""
        self.first_step = self._since_start()
        return {"first_step_seconds": seconds, **self.first_step}

    def summary(self) -> dict[str, int]:
        """Graphs and breaks of the whole run; ``recompilations``: graphs compiled after the first step."""
        total = self._since_start()
        first = self.first_step or total
        return {**total, "recompilations": total["graphs"] - first["graphs"]}
