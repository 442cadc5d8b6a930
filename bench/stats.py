"""Per-step statistics kept on the device and read back in one transfer at the logging interval.

Each `add(key, value)` writes a 0-dim tensor into a preallocated device buffer (one small copy,
no host sync). `flush()` reduces every buffer to its mean in a single device-to-host transfer and
also reports the first step whose value was not finite, which is how the trainer detects
divergence without synchronising every step.
"""

from __future__ import annotations

import math

import torch


class DeviceStats:
    def __init__(self, device: torch.device, capacity: int = 128):
        self.device = device
        self.capacity = capacity
        self._bufs: dict[str, torch.Tensor] = {}
        self._steps: dict[str, list[int]] = {}

    def add(self, key: str, value: torch.Tensor, step: int) -> None:
        steps = self._steps.setdefault(key, [])
        buf = self._bufs.get(key)
        n = len(steps)
        if buf is None:
            buf = self._bufs[key] = torch.empty(self.capacity, device=self.device)
        elif n == buf.numel():
            buf = self._bufs[key] = torch.cat([buf, torch.empty_like(buf)])
        buf[n] = value.detach()
        steps.append(step)

    def flush(self, watch: tuple[str, ...] = ()) -> tuple[dict[str, float], int | None]:
        """Means since the last flush, and the first step at which a key that starts with one of
        `watch` was not finite (None when all were finite)."""
        keys = [k for k, s in self._steps.items() if s]
        if not keys:
            return {}, None
        views = [self._bufs[k][: len(self._steps[k])] for k in keys]
        means = torch.stack([v.mean() for v in views]).tolist()  # the one sync
        out = dict(zip(keys, means, strict=True))
        bad_step = None
        for k, v in zip(keys, views, strict=True):
            if k.startswith(watch) and not math.isfinite(out[k]):
                i = int((~torch.isfinite(v)).nonzero()[0])
                s = self._steps[k][i]
                bad_step = s if bad_step is None else min(bad_step, s)
        for s in self._steps.values():
            s.clear()
        return out, bad_step
