"""Per-step statistics kept on the device and read back in one transfer at the logging interval.

`add(key, value)` only keeps a reference to a device tensor of K values (one per run of a
population; one value is shared by every run): no kernel, no host sync, so collecting statistics
costs the training step almost nothing. `flush()` stacks each key's values, reduces them to
per-run means and reads all means back in a single device-to-host transfer. It also reports each
run's first step whose value was not finite, which is how the trainer detects divergence without
synchronising every step.
"""

from __future__ import annotations

import math

import torch


class DeviceStats:
    def __init__(self, runs: int = 1) -> None:
        self.runs = runs
        self._values: dict[str, list[torch.Tensor]] = {}
        self._steps: dict[str, list[int]] = {}

    def add(self, key: str, value: torch.Tensor, step: int) -> None:
        if key not in self._values:
            self._values[key], self._steps[key] = [], []
        value = value.detach().reshape(-1)
        self._values[key].append(value.expand(self.runs) if value.numel() == 1 else value)
        self._steps[key].append(step)

    def series(self, key: str) -> torch.Tensor:
        """The values of `key` since the last flush, stacked [steps, K] (empty when none)."""
        vals = self._values.get(key)
        return torch.stack(vals).float() if vals else torch.empty(0, self.runs)

    def flush(self, watch: tuple[str, ...] = ()) -> tuple[list[dict[str, float]], list[int | None]]:
        """Each run's means since the last flush, and each run's first step at which a key that
        starts with one of `watch` was not finite (None when all were finite)."""
        keys = [k for k, v in self._values.items() if v]
        if not keys:
            return [{} for _ in range(self.runs)], [None] * self.runs
        stacked = {k: self.series(k) for k in keys}
        # In float64: finite float32 values whose float32 mean overflows (a member blowing up
        # but not yet infinite) must not read as non-finite without a non-finite value.
        means = torch.stack([stacked[k].double().mean(0) for k in keys]).T.tolist()  # one sync
        out = [dict(zip(keys, run, strict=True)) for run in means]
        bad: list[int | None] = [None] * self.runs
        for run in range(self.runs):
            for k in keys:
                if k.startswith(watch) and not math.isfinite(out[run][k]):
                    i = int((~torch.isfinite(stacked[k][:, run])).nonzero()[0])
                    s = self._steps[k][i]
                    bad[run] = s if bad[run] is None else min(bad[run], s)
        for k in keys:
            self._values[k].clear()
            self._steps[k].clear()
        return out, bad
