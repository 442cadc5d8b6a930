"""ZClip: z-score anomaly detection on the gradient norm with adaptive scaling.

Kumar et al. 2025, "ZClip: Adaptive Spike Mitigation for LLM Pre-Training" (arXiv 2504.02507),
section 3. An EMA of the mean and variance of the global norm (alpha 0.97) starts after a warm-up
of 25 steps (their plain mean and variance). Then with z = (g - mu) / (sigma + eps), when
z > z_thr the norm is clipped to mu + z_thr^2 sigma / z ("adaptive scaling"), and the EMA is
updated with the clipped norm (mean first, variance with the new mean, as the reference code).

The reference code also norm-clips everything to `max_grad_norm` = 1.0 first, silently; pure
ZClip has no cap, so here the cap is an explicit option (`max_norm`, 0 = off). G and D keep
separate statistics. All state lives on the device.
"""

from dataclasses import dataclass

import torch

from bench.methods.base import Method, MethodConfig, register_method
from bench.params import Search, param


@dataclass(frozen=True)
class ZClipConfig(MethodConfig):
    z_thresh: float = param(2.5, low=0.0, low_open=True, search=Search(1.0, 5.0))
    alpha: float = param(0.97, low=0.0, high=1.0, low_open=True, help="EMA decay")
    warmup: int = param(25, low=1, help="steps of plain statistics before clipping")
    eps: float = param(1e-6, low=0.0, low_open=True)
    max_norm: float = param(0.0, low=0.0, help="fixed cap applied first; 0 = off (pure ZClip)")


class ZScoreClipper:
    """State and update rule of ZClip for one role, per run: norms, EMAs and the thresholds
    `z_thresh`, `alpha`, `eps` are [K] tensors (the warm-up length is shared)."""

    def __init__(self, cfg: ZClipConfig, z_thresh=None, alpha=None, eps=None):
        self.cfg = cfg
        self.z_thresh = cfg.z_thresh if z_thresh is None else z_thresh
        self.alpha = cfg.alpha if alpha is None else alpha
        self.eps = cfg.eps if eps is None else eps
        self.step = 0  # host-side counter
        self.warm: torch.Tensor | None = None
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def update(self, norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Update the statistics with this step's norm; return (norm after clipping, whether it
        was clipped), or None during the warm-up."""
        cfg, norm = self.cfg, norm.detach()  # in the gradients' dtype
        finite = torch.isfinite(norm)  # an overflowing step (AMP) leaves the statistics alone
        if self.step < cfg.warmup:
            if self.warm is None:
                self.warm = norm.new_empty(cfg.warmup, norm.numel())
            self.warm[self.step] = torch.where(finite, norm, torch.nan)
            self.step += 1
            if self.step == cfg.warmup:
                self.mean = self.warm.nanmean(0)
                self.var = ((self.warm - self.mean) ** 2).nanmean(0)
            return None
        zt, alpha = self.z_thresh, self.alpha
        std = self.var.sqrt()
        z = (norm - self.mean) / (std + self.eps)
        clipped = self.mean + zt**2 * std / z
        over = z > zt
        new_norm = torch.where(over, clipped, norm)
        mean = alpha * self.mean + (1 - alpha) * new_norm
        var = alpha * self.var + (1 - alpha) * (new_norm - mean) ** 2
        self.mean = torch.where(finite, mean, self.mean)
        self.var = torch.where(finite, var, self.var)
        self.step += 1
        return new_norm, over

    def state_dict(self) -> dict:
        return {"step": self.step, "warm": self.warm, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.warm = state["step"], state["warm"]
        self.mean, self.var = state["mean"], state["var"]


@register_method
class ZClip(Method):
    config_cls = ZClipConfig
    family = "adaptive clipping"
    PER_RUN = True

    def _clipper(self, ctx) -> ZScoreClipper:
        if "clipper" not in ctx.state:
            hp = {k: self.per_run(ctx, k) for k in ("z_thresh", "alpha", "eps")}
            ctx.state["clipper"] = ZScoreClipper(self.config, **hp)
        return ctx.state["clipper"]

    def after_backward(self, ctx):
        grads = ctx.grads
        clipper = self._clipper(ctx)
        norm = ctx.norms.norm(grads)
        if any(c.max_norm > 0 for c in ctx.configs or (self.config,)):
            cap = self.per_run(ctx, "max_norm")
            cap = torch.where(cap > 0, cap, torch.inf)  # 0: no cap for that run
            ctx.norms.scale_to(grads, norm, cap)
            norm = torch.minimum(norm, cap)
        result = clipper.update(norm)
        if result is None:
            return {}
        new_norm, over = result
        # Scale only clipped steps: min(1, norm / (norm + 1e-6)) would nudge every other step.
        ctx.norms.scale_to(grads, norm, torch.where(over, new_norm, torch.inf))
        if not ctx.stats:
            return {}
        return {"threshold": new_norm, "clipped": over.float()}

    def state_dict(self, state):
        return {"clipper": state["clipper"].state_dict()} if "clipper" in state else {}

    def load_state_dict(self, saved):
        if "clipper" not in saved:
            return {}
        clipper = ZScoreClipper(self.config)
        clipper.load_state_dict(saved["clipper"])
        return {"clipper": clipper}
