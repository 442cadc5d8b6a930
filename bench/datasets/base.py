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

    def __init__(self, device: str | torch.device = "cpu", data_root: str | None = None,
                 **eval_options: Any):  # fmt: skip
        self.device = torch.device(device)

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Fail with a one-line ConfigError, before training, when the data cannot be had or do
        not fit the run (`cfg` is the resolved RunConfig: data_root, model, train)."""

    @classmethod
    def train_defaults(cls) -> dict[str, Any]:
        """TrainConfig values this data wants by default (method recipes and options win)."""
        return {}

    @classmethod
    def model_defaults(cls) -> dict[str, Any]:
        """ModelSpec fields this data needs (e.g. its dimension), before user overrides."""
        return {"kind": "mlp", "data_dim": cls.data_dim}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, generate: Callable[[int], torch.Tensor], n: int) -> dict[str, float]:
        """Score `n` samples of `generate` (a trainer `Sampler`: `generate(n)` for all at once,
        `generate.batches(n)` for a stream); keys without the `eval/` prefix."""
        raise NotImplementedError

    def objective(self, metric: str, value: float) -> float:
        """`value` of `metric` as a sweep objective: a dataset may give an undefined (NaN)
        metric its worst defined value instead, so that the sampler still learns from it."""
        return value

    @classmethod
    def save_samples(cls, path, samples, title: str) -> None:
        """A picture of one run's final samples (numpy array) at `path` (PNG)."""

    @classmethod
    def save_sample_grid(cls, path, samples_by_label: dict) -> None:
        """One picture of several runs' samples, for reports."""

    @classmethod
    def report_metrics_for(cls, keys) -> list[tuple[str, str]]:
        """The (metric, "min"/"max") pairs a report tabulates, given the logged metric names."""
        return [(m, d) for m, d in cls.report_metrics if m in keys]

    @classmethod
    def primary_for(cls, keys) -> str:
        return cls.primary_metric

    def describe(self) -> dict[str, Any]:
        """Parameters for the protocol card."""
        return {}


def create_dataset(name: str, **kwargs: Any) -> Dataset:
    return dataset_registry.get(name)(**kwargs)
