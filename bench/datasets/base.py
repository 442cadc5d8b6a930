"""The dataset contract: a seeded sampler of real batches that describes itself and declares
the metrics that apply to it (bench/metrics/base.py). Data never plot, never compute a metric's
formula and never know the report: they say what they are.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from bench.metrics.base import Metric, evaluate
from bench.registry import Registry
from bench.rng import Streams

dataset_registry = Registry("dataset")


class Dataset:
    """A source of real samples.

    Class level (no data loaded): `check(cfg)` fails early on data that cannot be had,
    `settle(train)` fixes evaluation choices (e.g. the feature extractor), `declare_metrics(cfg)`
    names the metrics, `train_defaults` / `model_defaults` the protocol. Instance level: `sample`
    and `describe`; `metrics` is what `declare_metrics` gave for this instance's options.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    data_dim: int
    keep_samples: ClassVar[int] = 5_000  # generated samples a run keeps for plots and artifacts
    reference_draws: ClassVar[int] = 5  # draws of each reference set; a report shows the median
    caveat: ClassVar[str] = ""  # what this data's numbers cannot show (printed in its section)

    def __init__(self, device: str | torch.device = "cpu", data_root: str | None = None,
                 **eval_options: Any):  # fmt: skip
        self.device = torch.device(device)

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Fail with a one-line ConfigError, before training, when the data cannot be had or do
        not fit the run (`cfg` is the resolved RunConfig: data_root, model, train)."""

    @classmethod
    def settle(cls, train: Any) -> Any:
        """The TrainConfig with this data's evaluation choices made (resolved once)."""
        return train

    @classmethod
    def declare_metrics(cls, train: Any) -> tuple[Metric, ...]:
        """The metrics of this data under the (settled) training config; exactly one primary."""
        raise NotImplementedError

    @classmethod
    def train_defaults(cls) -> dict[str, Any]:
        """TrainConfig values this data wants by default (method recipes and options win)."""
        return {}

    @classmethod
    def model_defaults(cls) -> dict[str, Any]:
        """ModelSpec fields this data needs (e.g. its dimension), before user overrides."""
        return {"kind": "mlp", "data_dim": cls.data_dim}

    @classmethod
    def landmarks(cls) -> Any:
        """Points worth marking on a picture of 2-D samples (a mixture's means), or None."""
        return None

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """This instance's metrics (image data: under the extractor it settled on)."""
        return self.declare_metrics(None)

    def evaluate(self, sampler: Any, n: int) -> dict[str, float]:
        """Every metric of this instance on `n` samples of `sampler` (a trainer `Sampler`)."""
        return evaluate(self, self.metrics, sampler, n)

    def sample(self, n: int, rng: Streams) -> torch.Tensor:
        """[K, n, ...]: n training samples from each of the K streams of `rng` (one per run)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Parameters for the protocol card."""
        return {}

    def references(self, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """{label: n reference samples} scored beside every table by the same metric code:
        `data` (the finite-sample ceiling), `uniform noise`, and collapse; {} when none."""
        return {}

    def replay(self, samples: torch.Tensor) -> Any:
        """What `evaluate` takes as the sampler, serving the fixed `samples` as if a generator
        drew them (how reference rows go through the metric code a run uses)."""
        return lambda n: samples[:n].float()


def create_dataset(name: str, **kwargs: Any) -> Dataset:
    """An instance by registered name (tests and benchmarks; runs go through `resolve`)."""
    return dataset_registry.get(name)(**kwargs)
