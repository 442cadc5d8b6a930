"""Metrics as objects: a name, which way is better, the definition a report prints, what the
metric needs and the function that computes it. A data set declares which metrics apply to it;
the trainer evaluates them and the report reads their declarations back from the run record, so a
new metric is one object and no edit to the trainer, the sweep or the report.

`needs` says what `compute(data, x, n)` receives as `x`:
- "samples": one tensor of the n evaluation samples (drawn once, shared by every such metric);
- "sampler": the trainer's `Sampler` (streams batches, or lets a library draw its own noise).
`compute` returns a float, or a dict when one computation yields several declared metrics (one
torch-fidelity call gives FD, KID, precision and recall); the others then have `compute=None`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

DIRECTIONS = ("min", "max")
NEEDS = ("samples", "sampler")


@dataclass(frozen=True)
class Metric:
    name: str  # as logged, without the `eval/` prefix
    direction: str  # "min" or "max": which way is better
    definition: str  # one sentence for reports
    compute: Callable[[Any, Any, int], float | dict[str, float]] | None = None
    needs: str = "samples"
    primary: bool = False  # what sweeps optimise and reports rank by (one per data set)
    success: bool = False  # a 0/1 value per run: 1 means the run succeeded
    pareto: bool = False  # an objective of multi-objective sweeps
    worst: float = math.nan  # the objective value of an undefined (NaN) result; NaN: none
    table: bool = True  # reports tabulate it (False: a diagnostic, e.g. classifier accuracy)
    # The protocol's convergence gate: the baseline's median must reach it (in the metric's
    # direction) for a report to rank methods; None: no gate on this metric.
    gate: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS or self.needs not in NEEDS:
            raise ValueError(f"metric {self.name}: direction {self.direction!r}, needs "
                             f"{self.needs!r}; allowed: {DIRECTIONS}, {NEEDS}")  # fmt: skip

    def passes(self, value: float) -> bool:
        """Whether `value` meets the gate (always, without one; never, when undefined)."""
        if self.gate is None:
            return True
        if math.isnan(value):
            return False
        return value >= self.gate if self.direction == "max" else value <= self.gate

    def objective(self, value: float) -> float:
        """`value` as a sweep objective: an undefined value scores `worst` when declared."""
        return self.worst if math.isnan(value) and not math.isnan(self.worst) else value

    @property
    def optuna_direction(self) -> str:
        return {"min": "minimize", "max": "maximize"}[self.direction]

    def declaration(self, order: int = 0) -> str:
        """What a run records about the metric (an MLflow param), for reports built later."""
        keys = ("direction", "definition", "primary", "success", "table", "gate", "worst")
        return json.dumps({k: getattr(self, k) for k in keys} | {"order": order})


def primary(metrics: Iterable[Metric]) -> Metric:
    return next(m for m in metrics if m.primary)


def evaluate(data: Any, metrics: Iterable[Metric], sampler: Any, n: int) -> dict[str, float]:
    """Every declared metric of `n` generated samples; keys without the `eval/` prefix."""
    metrics = tuple(metrics)
    samples = sampler(n) if any(m.needs == "samples" and m.compute for m in metrics) else None
    out: dict[str, float] = {}
    for m in metrics:
        if m.compute is None:
            continue
        value = m.compute(data, samples if m.needs == "samples" else sampler, n)
        out |= {k: float(v) for k, v in value.items()} if isinstance(value, dict) else {
            m.name: float(value)}  # fmt: skip
    missing = [m.name for m in metrics if m.name not in out]
    if missing:
        raise RuntimeError(f"metrics {missing} were declared but not computed")
    return out


def declarations(metrics: Iterable[Metric]) -> dict[str, str]:
    """MLflow params `metric.<name>` -> declaration, logged with every run."""
    return {f"metric.{m.name}": m.declaration(i) for i, m in enumerate(metrics)}


def read_declarations(params: dict[str, str]) -> list[Metric]:
    """The metrics a run declared (in its order), rebuilt from its params (no compute)."""
    found = []
    for key, text in params.items():
        if key.startswith("metric."):
            d = json.loads(text)
            metric = Metric(key.removeprefix("metric."), d["direction"], d["definition"],
                            primary=d["primary"], success=d["success"],
                            table=d.get("table", True), gate=d.get("gate"),
                            worst=d.get("worst", math.nan))  # fmt: skip
            found.append((d.get("order", 0), metric))
    return [m for _, m in sorted(found, key=lambda t: t[0])]
