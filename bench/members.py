"""The run dimension in one object: a population's members, each with its own seed, models,
training values (the fields declared `member=True`: learning rates, Adam's betas), method
configs (thresholds read per run) and logging callback. The ordinary run is a population of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from bench.config import TrainConfig


@dataclass(frozen=True)
class Member:
    seed: int
    generator: nn.Module  # built from `seed` (initialisation)
    discriminator: nn.Module
    train: TrainConfig  # the member's own; differs from the others' only in member fields
    configs: tuple[Any, ...] = ()  # method j's config for this member; () = the methods' own
    on_log: Callable[[int, dict[str, float]], None] | None = None


# A population's own callback, at every statistics flush: (step, rows) with rows[i] member i's
# logged values at this step while it trains, None once it has ended diverged (members that
# ended otherwise are absent); it returns the members to stop here, each with its reason (a
# sweep judges a trial on the mean over all its members and prunes them together).
OnFlush = Callable[[int, dict[int, dict[str, float] | None]], dict[int, BaseException]]


@dataclass(frozen=True)
class Population:
    members: tuple[Member, ...]
    z_dim: int
    on_flush: OnFlush | None = None

    @classmethod
    def one(cls, generator: nn.Module, discriminator: nn.Module, train: TrainConfig, *,
            z_dim: int, seed: int = 0, on_log=None) -> Population:  # fmt: skip
        return cls((Member(seed, generator, discriminator, train, on_log=on_log),), z_dim)

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.members]

    def configs(self, j: int, method) -> tuple[Any, ...]:
        """Method j's config of each member (the method's own where a member gives none)."""
        return tuple(m.configs[j] if m.configs else method.config for m in self.members)
