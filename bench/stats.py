"""Per-step statistics kept on the device and read back in one transfer at the logging interval.

`add(key, value)` only keeps a reference to a 0-dim device tensor: no kernel, no host sync, so
collecting statistics costs the training step almost nothing. `flush()` stacks each key's values,
reduces them to means and reads all means back in a single device-to-host transfer. It also
reports the first step whose value was not finite, which is how the trainer detects divergence
without synchronising every step.
"""

from __future__ import annotations

import math

import torch


class DeviceStats:
    def __init__(self) -> None:
        self._values: dict[str, list[torch.Tensor]] = {}
        self._steps: dict[str, list[int]] = {}

    def add(self, key: str, value: torch.Tensor, step: int) -> None:
        if key not in self._values:
            self._values[key], self._steps[key] = [], []
        self._values[key].append(value.detach())
        self._steps[key].append(step)

    def series(self, key: str) -> torch.Tensor:
        """The values of `key` since the last flush, stacked (empty when none)."""
        vals = self._values.get(key)
        return torch.stack(vals).float() if vals else torch.empty(0)

    def flush(self, watch: tuple[str, ...] = ()) -> tuple[dict[str, float], int | None]:
        """Means since the last flush, and the first step at which a key that starts with one of
        `watch` was not finite (None when all were finite)."""
        keys = [k for k, v in self._values.items() if v]
        if not keys:
            return {}, None
        stacked = {k: self.series(k) for k in keys}
        means = torch.stack([stacked[k].mean() for k in keys]).tolist()  # the one sync
        out = dict(zip(keys, means, strict=True))
        bad_step = None
        for k in keys:
            if k.startswith(watch) and not math.isfinite(out[k]):
                i = int((~torch.isfinite(stacked[k])).nonzero()[0])
                s = self._steps[k][i]
                bad_step = s if bad_step is None else min(bad_step, s)
        for k in keys:
            self._values[k].clear()
            self._steps[k].clear()
        return out, bad_step
