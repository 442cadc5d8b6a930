"""The dataset contract: a seeded sampler of real batches plus its own ground-truth evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from bench.registry import Registry

dataset_registry = Registry("dataset")


class Dataset:
    """A source of real samples that knows how to score generated ones.

    `primary_metric` and `direction` tell the sweep what to optimise; `success_metric` and
    `success_value` define a "successful" run for the report (e.g. all modes captured).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    data_dim: int
    primary_metric: ClassVar[str]
    direction: ClassVar[str] = "minimize"
    # (metric, "min" or "max"): what the report tabulates, in order, and which way is better
    report_metrics: ClassVar[tuple[tuple[str, str], ...]] = ()
    success_metric: ClassVar[str | None] = None  # a 0/1 metric: 1 means the run succeeded
    # (metric, "min"/"max") pair for multi-objective sweeps: quality vs coverage
    pareto_metrics: ClassVar[tuple[tuple[str, str], ...]] = ()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, generate: Callable[[int], torch.Tensor], n: int) -> dict[str, float]:
        """Score `n` samples drawn by `generate(batch)`; keys without the `eval/` prefix."""
        raise NotImplementedError

    def objective(self, metric: str, value: float) -> float:
        """`value` of `metric` as a sweep objective: a dataset may give an undefined (NaN)
        metric its worst defined value instead, so that the sampler still learns from it."""
        return value

    def reference_points(self):
        """Points to mark on sample plots (the mixture means), or None."""
        return None

    def describe(self) -> dict[str, Any]:
        """Parameters for the protocol card."""
        return {}


def create_dataset(name: str, **kwargs: Any) -> Dataset:
    return dataset_registry.get(name)(**kwargs)
