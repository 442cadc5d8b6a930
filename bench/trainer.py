"""THE training loop: n_critic D updates then one G update per step, each through `_update`,
which calls the method hooks at fixed points (see bench/methods/base.py for the order).

The loop knows no method by name. Statistics stay on the device (bench/stats.py) and are read
only every `log_every` steps; divergence (a non-finite loss or gradient norm) is detected there,
stops the run with status `diverged` and records the first bad step. It is a result, not a crash.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from bench.config import TrainConfig
from bench.datasets.base import Dataset
from bench.losses import LOSSES
from bench.methods.base import LossContext, Method, UpdateContext
from bench.metrics.base import Metric, evaluate
from bench.metrics.gradients import GradNorms, grads_of, layer_grad_stats
from bench.stats import DeviceStats

EVAL_BATCH = 10_000


@dataclass
class RunResult:
    status: str  # "finished" or "diverged"
    steps: int  # generator steps completed
    diverged_step: int | None
    metrics: dict[str, float]  # final evaluation, keys "eval/..."
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    wall_time_s: float = 0.0  # training and evaluation
    train_time_s: float = 0.0  # the training loop alone (with its periodic flushes and evals)
    samples: torch.Tensor | None = None  # the final evaluation's samples (first few thousand)


class Sampler:
    """Samples of G in eval mode from a fixed noise stream (the same z at every evaluation),
    in batches so that large evaluations never hold every sample at once. `module` and `z_dim`
    let metric libraries draw their own noise instead."""

    def __init__(self, module: nn.Module, z_dim: int, device: torch.device, seed: int):
        self.module, self.z_dim, self.device, self.seed = module, z_dim, device, seed
        self.first: torch.Tensor | None = None  # the first batch of the last call, for plots

    @torch.no_grad()
    def batches(self, n: int, batch: int = EVAL_BATCH):
        rng = torch.Generator(device=self.device).manual_seed(self.seed)
        was_training = self.module.training
        self.module.eval()
        try:
            for i in range(0, n, batch):
                z = torch.randn(min(batch, n - i), self.z_dim, generator=rng, device=self.device)
                out = self.module(z).float()
                if i == 0:
                    self.first = out
                yield out
        finally:
            self.module.train(was_training)

    def __call__(self, n: int) -> torch.Tensor:
        return torch.cat(list(self.batches(n)))


@dataclass
class _Role:
    model: nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    methods: list[Method]
    params: list[torch.Tensor]
    contexts: list[UpdateContext]  # one per method, kept across updates (it holds the state)
    touches_grads: bool = False  # some method overrides after_backward


def make_optimizer(params, train: TrainConfig, lr: float) -> torch.optim.Optimizer:
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(train.beta1, train.beta2), foreach=True)
    if train.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    return torch.optim.SGD(params, lr=lr, momentum=train.beta1, nesterov=True, foreach=True)


class Trainer:
    """Trains G against D on `dataset` with `methods` plugged in at the hook points."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        dataset: Dataset,
        methods: list[Method],
        train: TrainConfig,
        *,
        z_dim: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        on_log: Callable[[int, dict[str, float]], None] | None = None,
        metrics: tuple[Metric, ...] | None = None,
    ):
        self.device = torch.device(device)
        self.metrics = metrics if metrics is not None else dataset.declare_metrics(train)
        self.train, self.dataset, self.z_dim, self.seed = train, dataset, z_dim, seed
        self.loss = LOSSES[train.loss]
        self.on_log = on_log
        self.G, self.D = generator.to(self.device), discriminator.to(self.device)
        self.norms = GradNorms()  # one measurement per gradient state, shared with methods
        self.roles = {
            "generator": self._role("generator", self.G, methods),
            "discriminator": self._role("discriminator", self.D, methods),
        }
        self.data_rng = self._rng(0)
        self.noise_rng = self._rng(1)
        self.method_rng = self._rng(3)  # penalties draw here, so data and noise stay paired
        self.stats = DeviceStats()
        self.step = 0
        self._layer_stats_due = False
        self.last_samples: torch.Tensor | None = None

    def _role(self, role: str, model: nn.Module, methods: list[Method]) -> _Role:
        """Optimizer, scaler and the methods that target `role` (the trainer does the filtering)."""
        mine = [m for m in methods if role in m.config.targets]
        lr = self.train.lr_mult * (self.train.lr_g if role == "generator" else self.train.lr_d)
        params = [p for p in model.parameters() if p.requires_grad]
        return _Role(
            model=model,
            opt=make_optimizer(model.parameters(), self.train, lr),
            scaler=torch.amp.GradScaler(self.device.type, enabled=self.train.amp),
            methods=mine,
            params=params,
            contexts=[
                UpdateContext(role, model, params, self.norms, self.train.stats) for _ in mine
            ],  # fmt: skip
            touches_grads=any(type(m).after_backward is not Method.after_backward for m in mine),
        )

    def _rng(self, offset: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed * 1000 + offset)

    def _autocast(self):
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.train.amp)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=self.noise_rng, device=self.device)

    def _record(self, prefix: str, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            self.stats.add(f"{prefix}/{k}", v, self.step)

    def _update(self, role: str, terms: dict[str, torch.Tensor], ctx: LossContext) -> None:
        """One optimizer update: loss hooks, backward, unscale, after_backward, step, after_step."""
        r = self.roles[role]
        for m in r.methods:
            terms = m.loss(terms, ctx)
        loss = sum(terms.values())
        r.opt.zero_grad(set_to_none=True)
        r.scaler.scale(loss).backward()
        r.scaler.unscale_(r.opt)  # hooks see true gradients (a no-op without AMP)
        self.norms.new_update()
        self.stats.add(f"loss/{role}", loss, self.step)
        if self.train.stats:
            if len(terms) > 1:
                self._record(f"loss/{role}", terms)
            grads = grads_of(r.params)
            pre = self.norms.norm(grads)
            if self._layer_stats_due:
                self._record(f"layer/{role}", layer_grad_stats(r.model))
        for m, c in zip(r.methods, r.contexts, strict=True):
            c.step = self.step
            self._record(f"method/{m.name}/{role}", m.after_backward(c))
        if self.train.stats:
            # Norm clippers hand their result to `norms`; other hooks cost a measurement.
            post = self.norms.norm(grads) if r.touches_grads else pre
            self.stats.add(f"grad/{role}/norm_pre", pre, self.step)
            self.stats.add(f"grad/{role}/norm_post", post, self.step)
        r.scaler.step(r.opt)
        r.scaler.update()
        for m, c in zip(r.methods, r.contexts, strict=True):
            self._record(f"method/{m.name}/{role}", m.after_step(c))

    def _d_step(self) -> torch.Tensor:
        real = self.dataset.sample(self.train.batch_size, self.data_rng)
        with self._autocast():
            with torch.no_grad():
                fake = self.G(self._noise(self.train.batch_size))
            d_real, d_fake = self.D(real), self.D(fake)
            terms = {"adv": self.loss.discriminator(d_real, d_fake)}
            ctx = LossContext(real, fake, self.D, self.method_rng, "discriminator")
            self._update("discriminator", terms, ctx)
        if self.train.stats:  # whole batches: averaged at the flush, not per step
            self.stats.add("d/real", d_real, self.step)
            self.stats.add("d/fake", d_fake, self.step)
        return real

    def _g_step(self, real: torch.Tensor) -> None:
        with self._autocast():
            fake = self.G(self._noise(self.train.batch_size))
            terms = {"adv": self.loss.generator(self.D(fake))}
            ctx = LossContext(real, fake, self.D, self.method_rng, "generator")
            self._update("generator", terms, ctx)

    def evaluate(self) -> dict[str, float]:
        sampler = Sampler(self.G, self.z_dim, self.device, self.seed * 1000 + 2)
        metrics = evaluate(self.dataset, self.metrics, sampler, self.train.eval_samples)
        if sampler.first is not None:
            self.last_samples = sampler.first[: self.dataset.keep_samples].cpu()
        return {f"eval/{k}": float(v) for k, v in metrics.items()}

    def _critic_updates(self) -> int:
        """D updates before this G update: n_critic, or WGAN's warm schedule (100 at the first
        25 generator steps and every 500th) when the recipe asks for it."""
        warm = self.step < 25 or self.step % 500 == 0
        return 100 if self.train.critic_schedule == "wgan" and warm else self.train.n_critic

    def fit(self, progress: bool = False) -> RunResult:
        """Train for `train.steps` generator steps (or until divergence) and evaluate."""
        t0, tr = time.perf_counter(), self.train
        history: list[tuple[int, dict[str, float]]] = []
        status, bad_step = "finished", None
        bar = tqdm(total=tr.steps, disable=not progress, file=sys.stderr, desc="train", leave=False)
        while self.step < tr.steps:
            due = tr.stats and self.step % tr.layer_stats_every == 0
            for i in range(self._critic_updates()):
                self._layer_stats_due = due and i == 0  # once per step and role
                real = self._d_step()
            self._layer_stats_due = due
            self._g_step(real)
            self.step += 1
            bar.update()
            due_log = self.step % tr.log_every == 0 or self.step % tr.eval_every == 0
            if due_log or self.step == tr.steps:
                bad_step = self._log(history, bar)
                if bad_step is not None:
                    status = "diverged"
                    break
        bar.close()
        train_time = time.perf_counter() - t0
        metrics = self._final_metrics(history)
        wall = time.perf_counter() - t0
        return RunResult(
            status, self.step, bad_step, metrics, history, wall, train_time, self.last_samples
        )

    def _final_metrics(self, history) -> dict[str, float]:
        """The evaluation at the last step: reused when the last flush evaluated, else run now
        (an off-cadence end, or a divergence) and merged into the history."""
        last = history[-1][1] if history and history[-1][0] == self.step else None
        metrics = {k: v for k, v in (last or {}).items() if k.startswith("eval/")}
        if not metrics:
            metrics = self.evaluate()
            if self.on_log is not None:
                self.on_log(self.step, metrics)
            if last is None:
                history.append((self.step, metrics))
            else:
                last.update(metrics)
        return metrics

    def _clip_rates(self) -> None:
        """Clip rate per role: the fraction of updates whose gradient norm a method reduced,
        derived from the recorded norms at flush time instead of per step."""
        for role in self.roles:
            pre = self.stats.series(f"grad/{role}/norm_pre")
            post = self.stats.series(f"grad/{role}/norm_post")
            if pre.numel():
                self.stats.add(f"clip/{role}/rate", (post < pre * (1 - 1e-6)).float().mean(), 0)

    def _log(self, history, bar) -> int | None:
        """Flush the device statistics (and evaluate when due); the first non-finite step."""
        self._clip_rates()
        # Under AMP an overflowing gradient is the scaler's business (it skips the step).
        watch = ("loss/",) if self.train.amp else ("loss/", "grad/")
        logged, bad_step = self.stats.flush(watch=watch)
        if bad_step is None and (self.step % self.train.eval_every == 0):
            logged |= self.evaluate()
        history.append((self.step, logged))
        if self.on_log is not None:
            self.on_log(self.step, logged)
        shown = {k.split("/", 1)[1]: v for k, v in logged.items() if k.startswith("eval/")}
        if shown:
            bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items() if k != "all_modes"})
        return bad_step
