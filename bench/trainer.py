"""THE training loop: n_critic D updates then one G update per step, each through `_update`,
which calls the method hooks at fixed points (see bench/methods/base.py for the order).

The loop knows no method by name. It trains a population of K runs as one set of batched
tensors (bench/population.py); the ordinary run is the population of one. Statistics stay on the
device (bench/stats.py), per run, and are read only every `log_every` steps; divergence (a
non-finite loss or gradient norm) is detected there, ends that run with status `diverged` and
records its first bad step. It is a result, not a crash, and the other runs go on.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from tqdm import tqdm

from bench.config import TrainConfig
from bench.datasets.base import Dataset
from bench.losses import LOSSES
from bench.members import Population
from bench.methods.base import LossContext, MemberValues, Method, UpdateContext
from bench.metrics.base import Metric, evaluate
from bench.metrics.gradients import GradNorms, grads_of, layer_grad_stats
from bench.optim import make_optimizer
from bench.population import Single, member, stack
from bench.rng import DATA, EVAL, METHOD, NOISE, Streams
from bench.stats import DeviceStats

EVAL_BATCH = 10_000


@dataclass
class RunResult:
    status: str  # "finished", "diverged", or "stopped" (its on_log raised: `error`)
    steps: int  # generator steps completed
    diverged_step: int | None
    metrics: dict[str, float]  # final evaluation, keys "eval/..."
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    wall_time_s: float = 0.0  # training and evaluation
    train_time_s: float = 0.0  # the training loop alone (with its periodic flushes and evals)
    samples: torch.Tensor | None = None  # the final evaluation's samples (first few thousand)
    error: Exception | None = None  # what the run's `on_log` raised (status `stopped`)


class Sampler:
    """Samples of G in eval mode from a fixed noise stream (the same z at every evaluation),
    in batches so that large evaluations never hold every sample at once. `module` and `z_dim`
    let metric libraries draw their own noise instead."""

    def __init__(self, module: nn.Module, z_dim: int, device: torch.device, seed: int):
        self.module, self.z_dim, self.device, self.seed = module, z_dim, device, seed
        self.first: torch.Tensor | None = None  # the first batch of the last call, for plots

    @torch.no_grad()
    def batches(self, n: int, batch: int = EVAL_BATCH):
        rng = Streams([self.seed], EVAL, self.device)
        was_training = self.module.training
        self.module.eval()
        try:
            for i in range(0, n, batch):
                z = rng.normal(min(batch, n - i), self.z_dim)[0]
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
    model: nn.Module  # the ordinary model (K = 1) or the stacked one
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    hooks: list[tuple[Method, UpdateContext]]  # each targeting method with its kept context
    params: list[torch.Tensor]
    touches_grads: bool = False  # some method overrides after_backward


@contextmanager
def frozen(params: list[torch.Tensor]):
    """Autograd computes no gradient for `params` inside (inputs' gradients flow through)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Trainer:
    """Trains G against D on `dataset` with `methods` plugged in at the hook points, for one
    run or a population of K runs at once (bench/population.py), with one code path.

    `population` holds the members: each its seed, its models (built from that seed), its own
    training values (learning rates, betas) and method configs. A member's trajectory depends on
    those and the shared `train` options only: data, noise and penalty draws come from its own
    streams."""

    def __init__(self, population: Population, dataset: Dataset, methods: list[Method],
                 train: TrainConfig, device: torch.device | str = "cpu",
                 metrics: tuple[Metric, ...] | None = None):  # fmt: skip
        self.device = torch.device(device)
        self.metrics = metrics if metrics is not None else dataset.declare_metrics(train)
        self.train, self.dataset, self.z_dim = train, dataset, population.z_dim
        self.population, members = population, population.members
        self.g_members = [m.generator.to(self.device) for m in members]
        self.d_members = [m.discriminator.to(self.device) for m in members]
        self.seeds, self.runs = population.seeds, population.size
        self.seed = self.seeds[0]
        self.loss = LOSSES[train.loss]
        self.on_log = [m.on_log for m in members]
        k = self.runs
        # K = 1: the ordinary models, viewed as a one-member population for the forward pass.
        self.G, self.D = (x[0] if k == 1 else stack(x) for x in (self.g_members, self.d_members))
        self._G, self._D = (Single(m) if k == 1 else m for m in (self.G, self.D))
        self.norms = GradNorms(stacked=k > 1)  # one measurement per gradient state, per run
        configs = [population.configs(j, m) for j, m in enumerate(methods)]
        self.roles = {
            role: self._role(role, model, methods, configs)
            for role, model in (("generator", self.G), ("discriminator", self.D))
        }
        # Each run's own streams, drawn for all K runs at once (bench/rng.py).
        self.data_rng, self.noise_rng, self.method_rng = (
            Streams(self.seeds, purpose, self.device) for purpose in (DATA, NOISE, METHOD)
        )
        self.stats = DeviceStats(k)
        self.step = 0
        self._layer_stats_due = False
        self.last_samples: list[torch.Tensor | None] = [None] * k
        self._errors: list[Exception | None] = [None] * k

    def _role(self, role: str, model: nn.Module, methods: list[Method], configs) -> _Role:
        """Optimizer (with each member's rates), scaler and the methods that target `role` (the
        trainer does the filtering)."""
        mine = [(m, c) for m, c in zip(methods, configs, strict=True) if role in m.config.targets]
        params = [p for p in model.parameters() if p.requires_grad]
        return _Role(
            model=model,
            opt=make_optimizer(model.parameters(), [m.train for m in self.population.members],
                               role),
            scaler=torch.amp.GradScaler(self.device.type, enabled=self.train.amp),
            hooks=[(m, UpdateContext(role, model, params, self.norms, self.train.stats,
                                     runs=self.runs, members=MemberValues(tuple(c))))
                   for m, c in mine],
            params=params,
            touches_grads=any(type(m).after_backward is not Method.after_backward for m, _ in mine),
        )  # fmt: skip

    def _autocast(self):
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.train.amp)

    def _noise(self, n: int) -> torch.Tensor:
        """[K, n, z]: each run's noise from its own stream, in the models' dtype."""
        return self.noise_rng.normal(n, self.z_dim, dtype=self.roles["generator"].params[0].dtype)

    def _real(self, n: int) -> torch.Tensor:
        """[K, n, ...]: each run's batch from its own stream, in the models' dtype."""
        return self.dataset.sample(n, self.data_rng).to(self.roles["discriminator"].params[0].dtype)

    def _record(self, prefix: str, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            self.stats.add(f"{prefix}/{k}", v, self.step)

    def _update(self, role: str, terms: dict[str, torch.Tensor], ctx: LossContext) -> None:
        """One optimizer update: loss hooks, backward, unscale, after_backward, step, after_step.
        Terms and losses are per run, [K]; the backward pass takes their sum (runs are
        independent, so each run's gradients are its own loss's)."""
        r = self.roles[role]
        for m, c in r.hooks:
            terms = m.loss(terms, replace(ctx, members=c.members))
        loss = sum(terms.values())
        r.opt.zero_grad(set_to_none=True)
        r.scaler.scale(loss.sum()).backward()
        r.scaler.unscale_(r.opt)  # hooks see true gradients (a no-op without AMP)
        self.norms.new_update()
        self.stats.add(f"loss/{role}", loss, self.step)
        if self.train.stats:
            if len(terms) > 1:
                self._record(f"loss/{role}", terms)
            grads = grads_of(r.params)
            pre = self.norms.norm(grads)
            if self._layer_stats_due:
                self._record(f"layer/{role}", layer_grad_stats(r.model, self.runs > 1))
        for m, c in r.hooks:
            c.step = self.step
            self._record(f"method/{m.name}/{role}", m.after_backward(c))
        if self.train.stats:
            # Norm clippers hand their result to `norms`; other hooks cost a measurement.
            post = self.norms.norm(grads) if r.touches_grads else pre
            self.stats.add(f"grad/{role}/norm_pre", pre, self.step)
            self.stats.add(f"grad/{role}/norm_post", post, self.step)
        r.scaler.step(r.opt)
        r.scaler.update()
        for m, c in r.hooks:
            self._record(f"method/{m.name}/{role}", m.after_step(c))

    def _d_step(self) -> torch.Tensor:
        real = self._real(self.train.batch_size)
        with self._autocast():
            with torch.no_grad():
                fake = self._G(self._noise(self.train.batch_size))
            d_real, d_fake = self._D(real), self._D(fake)
            terms = {"adv": self.loss.discriminator(d_real, d_fake)}
            ctx = LossContext(real, fake, self._D, self.method_rng, "discriminator")
            self._update("discriminator", terms, ctx)
        if self.train.stats:  # batch means per run
            self.stats.add("d/real", d_real.detach().float().mean(-1), self.step)
            self.stats.add("d/fake", d_fake.detach().float().mean(-1), self.step)
            # The critic's output magnitude, mean |D(x)| over real and fake: what an
            # unconstrained Wasserstein critic lets grow without bound (signed means of outputs
            # of both signs can cancel; magnitudes cannot).
            both = torch.cat([d_real, d_fake], -1).detach().float()
            self.stats.add("d/abs", both.abs().mean(-1), self.step)
        return real

    def _g_step(self, real: torch.Tensor) -> None:
        # D's parameters are frozen through G's update: their gradients would be computed and
        # thrown away (D's next update zeroes them), a quarter of G's backward pass.
        with self._autocast(), frozen(self.roles["discriminator"].params):
            fake = self._G(self._noise(self.train.batch_size))
            terms = {"adv": self.loss.generator(self._D(fake))}
            ctx = LossContext(real, fake, self._D, self.method_rng, "generator")
            self._update("generator", terms, ctx)

    def evaluate(self, run: int = 0) -> dict[str, float]:
        """Run `run`'s evaluation: its generator alone, as an ordinary model."""
        g = member(self._G, self.g_members[run], run)
        sampler = Sampler(g, self.z_dim, self.device, self.seeds[run])
        metrics = evaluate(self.dataset, self.metrics, sampler, self.train.eval_samples)
        if sampler.first is not None:
            self.last_samples[run] = sampler.first[: self.dataset.keep_samples].cpu()
        return {f"eval/{k}": float(v) for k, v in metrics.items()}

    def _critic_updates(self) -> int:
        """D updates before this G update: n_critic, or WGAN's warm schedule (100 at the first
        25 generator steps and every 500th) when the recipe asks for it."""
        warm = self.step < 25 or self.step % 500 == 0
        return 100 if self.train.critic_schedule == "wgan" and warm else self.train.n_critic

    def fit(self, progress: bool = False) -> RunResult:
        """Train the one run for `train.steps` generator steps (or until divergence), evaluate."""
        if self.runs != 1:
            raise ValueError(f"fit() trains one run; this trainer holds {self.runs}: fit_all()")
        return self.fit_all(progress)[0]

    def fit_all(self, progress: bool = False) -> list[RunResult]:
        """Train every run for `train.steps` generator steps and evaluate each. A run whose
        statistics turn non-finite ends there (status `diverged`, evaluated at that step) while
        the others go on: its slice computes on, but nothing of it is read again."""
        t0, tr = time.perf_counter(), self.train
        histories: list[list] = [[] for _ in range(self.runs)]
        results: list[RunResult | None] = [None] * self.runs
        active = list(range(self.runs))
        bar = tqdm(total=tr.steps, disable=not progress, file=sys.stderr, desc="train", leave=False)
        while self.step < tr.steps and active:
            due = tr.stats and self.step % tr.layer_stats_every == 0
            for i in range(self._critic_updates()):
                self._layer_stats_due = due and i == 0  # once per step and role
                real = self._d_step()
            self._layer_stats_due = due
            self._g_step(real)
            self.step += 1
            bar.update()
            done = self.step == tr.steps
            if self.step % tr.log_every == 0 or self.step % tr.eval_every == 0 or done:
                for run, bad in self._log(histories, bar, active):
                    results[run] = self._result(run, "diverged", bad, histories[run], t0)
                    active.remove(run)
                self._population_hook(histories, results, active)
                for run in [r for r in active if self._errors[r] is not None]:
                    results[run] = self._result(run, "stopped", None, histories[run], t0)
                    active.remove(run)
        bar.close()
        for run in active:
            results[run] = self._result(run, "finished", None, histories[run], t0)
        return results

    def _population_hook(self, histories, results, active: list[int]) -> None:
        """The population's `on_flush` (bench/members.py): the members it names stop here,
        like one whose `on_log` raised."""
        hook = self.population.on_flush
        if hook is None:
            return
        rows = {r: None for r, res in enumerate(results) if res and res.status == "diverged"}
        rows |= {r: histories[r][-1][1] for r in active}
        for run, error in hook(self.step, rows).items():
            if run in active and self._errors[run] is None:
                self._errors[run] = error

    def _result(self, run: int, status: str, bad: int | None, history, t0: float) -> RunResult:
        train_time = time.perf_counter() - t0
        metrics = self._final_metrics(run, history)
        wall = time.perf_counter() - t0
        return RunResult(status, self.step, bad, metrics, history, wall, train_time,
                         self.last_samples[run], self._errors[run])  # fmt: skip

    def _tell(self, run: int, logged: dict[str, float]) -> None:
        """Run `run`'s `on_log`. What it raises (a sweep's pruning) ends that run alone, at this
        step; the exception is kept on its result, for the caller to act on."""
        if self.on_log[run] is None or self._errors[run] is not None:
            return
        try:
            self.on_log[run](self.step, logged)
        except Exception as e:  # kept on the result and re-raised by the caller, not swallowed
            self._errors[run] = e

    def _final_metrics(self, run: int, history) -> dict[str, float]:
        """The evaluation at the last step: reused when the last flush evaluated, else run now
        (an off-cadence end, or a divergence) and merged into the history."""
        last = history[-1][1] if history and history[-1][0] == self.step else None
        metrics = {k: v for k, v in (last or {}).items() if k.startswith("eval/")}
        if not metrics:
            metrics = self.evaluate(run)
            self._tell(run, metrics)
            if last is None:
                history.append((self.step, metrics))
            else:
                last.update(metrics)
        return metrics

    def _clip_rates(self) -> None:
        """Clip rate per role and run: the fraction of updates whose gradient norm a method
        reduced, derived from the recorded norms at flush time instead of per step."""
        for role in self.roles:
            pre = self.stats.series(f"grad/{role}/norm_pre")
            post = self.stats.series(f"grad/{role}/norm_post")
            if pre.numel():
                self.stats.add(f"clip/{role}/rate", (post < pre * (1 - 1e-6)).float().mean(0), 0)

    def _log(self, histories, bar, active: list[int]) -> list[tuple[int, int]]:
        """Flush the device statistics (and evaluate the active runs when due); the active runs
        that turned non-finite since the last flush, with their first bad step."""
        self._clip_rates()
        # Under AMP an overflowing gradient is the scaler's business (it skips the step).
        watch = ("loss/",) if self.train.amp else ("loss/", "grad/")
        logged, bad_steps = self.stats.flush(watch=watch)
        diverged = []
        for run in active:
            if bad_steps[run] is not None:
                diverged.append((run, bad_steps[run]))
            elif self.step % self.train.eval_every == 0:
                logged[run] |= self.evaluate(run)
            histories[run].append((self.step, logged[run]))
            self._tell(run, logged[run])
        shown = {k.split("/", 1)[1]: v for k, v in logged[active[0]].items() if k[:5] == "eval/"}
        if shown and self.runs == 1:
            bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items() if k != "all_modes"})
        elif self.runs > 1:
            bar.set_postfix({"runs": len(active) - len(diverged)})
        return diverged
