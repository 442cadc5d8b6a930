"""AutoClip: clip to a percentile of the history of gradient norms.

Seetharaman, Wichern, Pardo and Le Roux 2020, "AutoClip: Adaptive Gradient Clipping for Source
Separation Networks" (arXiv 2007.14469), Algorithm 1: append the current pre-clip global norm to
the history, take its p-th percentile (linear interpolation, as `np.percentile`) as the
threshold, then norm-clip to it. The paper's p = 10 (most steps clip). `window` > 0 keeps only
the last `window` norms (the paper keeps all: window 0). The history is a tensor on the device
(a ring buffer when windowed, doubling capacity otherwise), never a Python list. G and D keep
separate histories.
"""

from dataclasses import dataclass

import torch

from bench.methods.base import Method, MethodConfig, register_method
from bench.params import Search, param


@dataclass(frozen=True)
class AutoClipConfig(MethodConfig):
    percentile: float = param(
        10.0, low=0.0, high=100.0, low_open=True, search=Search(1.0, 99.0, log=False)
    )
    window: int = param(0, low=0, help="history length; 0 keeps every step (the paper)")


class NormHistory:
    """Norm history on the device, [steps, K] (a column per run): ring buffer of `window`, or
    unbounded with doubling storage."""

    def __init__(self, window: int):
        self.window = window
        self.count = 0  # host-side counter: incrementing it never syncs
        self.buf: torch.Tensor | None = None

    def push(self, norm: torch.Tensor) -> torch.Tensor:
        """Append `norm` [K]; return the history including it."""
        norm = norm.detach()
        if self.buf is None:
            self.buf = norm.new_empty(self.window or 1024, norm.numel())
        if self.window == 0 and self.count == self.buf.numel():
            self.buf = torch.cat([self.buf, torch.empty_like(self.buf)])
        cap = self.buf.shape[0]
        self.buf[self.count % cap] = norm
        self.count += 1
        return self.buf[: min(self.count, cap)]

    def state_dict(self) -> dict:
        return {"count": self.count, "buf": self.buf}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.buf = state["count"], state["buf"]


@register_method
class AutoClip(Method):
    config_cls = AutoClipConfig
    family = "adaptive clipping"
    PER_RUN = True

    def after_backward(self, ctx):
        grads = ctx.grads
        history = ctx.state.setdefault("history", NormHistory(self.config.window))
        norm = ctx.norms.norm(grads)
        # An overflowing step (AMP: the scaler skips it) must not poison the history: it goes
        # in as NaN, which the percentile ignores.
        hist = history.push(torch.where(torch.isfinite(norm), norm, torch.nan))
        q = self.per_run(ctx, "percentile") / 100.0
        # Each run's own percentile of its own column: the diagonal of (q_i of column j).
        threshold = torch.nanquantile(hist, q, dim=0).diagonal()
        ctx.norms.scale_to(grads, norm, threshold)
        if not ctx.stats:
            return {}
        return {"threshold": threshold, "clipped": (norm > threshold).float()}

    def state_dict(self, state):
        return {"history": state["history"].state_dict()} if "history" in state else {}

    def load_state_dict(self, saved):
        if "history" not in saved:
            return {}
        history = NormHistory(self.config.window)
        history.load_state_dict(saved["history"])
        return {"history": history}
