"""A sweep trial's objective: the method's mean primary metric over all of the trial's members,
each (objective cell, tuning seed) one member, trained as one population.

Members of one trial share its threshold and differ in seed and in the member fields of their
cell (a stress axis's learning-rate multiple, Adam's beta1), so the objective a suite tunes for
is the study's own: how well the method does across the cells, not at the reference alone, and
on enough seeds that its noise is below the differences it ranks. A member that diverges scores
the metric's declared worst value (the trial stays a result the sampler learns from: divergence
at a large step size is what a stability study expects); with no worst value declared, the trial
fails with its reason.

The pruner sees what the objective sees: at each evaluation, the mean over the trial's members
(diverged ones at their worst), reported once per trial; a pruned trial's members all stop at
that flush, so its population ends there.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from bench.methods import method_registry, search_space
from bench.run import execute_population


class Diverged(Exception):
    """A trial's training diverged; Optuna records the trial as FAIL and the study continues."""


class Objective:
    """Train each asked trial's members; report their mean to the pruner; one nested MLflow run
    per trial."""

    def __init__(self, cfg, tracker, experiment: str, parent):
        self.cfg, self.tracker, self.experiment, self.parent = cfg, tracker, experiment, parent
        self.objectives = cfg.objectives()

    def suggest(self, trial) -> dict[str, float]:
        cls = method_registry.get(self.cfg.method)
        return {
            name: trial.suggest_float(name, s.low, s.high, log=s.log)
            for name, s in search_space(cls).items()
        }

    def __call__(self, trial) -> float | tuple[float, ...]:
        outcome = self.run_many([(trial, self.suggest(trial))])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def run_many(self, asked: list[tuple[Any, dict[str, float]]]) -> list[Any]:
        """Train the asked (trial, params) as one population; each trial's outcome: its
        value(s), or the TrialPruned / Diverged that ends it."""
        with contextlib.ExitStack() as stack:
            runs = [stack.enter_context(self._start(t, p)) for t, p in asked]
            outcomes = self._train(asked, runs)
            for (trial, _), run, outcome in zip(asked, runs, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    state = "PRUNED" if type(outcome).__name__ == "TrialPruned" else "FAIL"
                    run.set_tags({"state": state, "reason": str(outcome)})
                    continue
                run.log_metrics(trial.number, {f"objective/{i}": v for i, v in enumerate(outcome)})
                run.set_tags(
                    {
                        "state": "COMPLETE",
                        "member_values": trial.user_attrs.get("member_values", "[]"),
                    }
                )
        return [o if isinstance(o, BaseException) or len(o) > 1 else o[0] for o in outcomes]

    def _start(self, trial, params):
        tags = {"kind": "trial", "study": self.cfg.study_name, "trial": trial.number,
                "dataset": self.cfg.dataset, "method": self.cfg.method}  # fmt: skip
        flat = {f"trial.{k}": repr(v) for k, v in params.items()}
        name = f"{self.cfg.study_name}#{trial.number}"
        return self.tracker.start_run(self.experiment, name, tags, flat, parent=self.parent)

    def _train(self, asked, runs) -> list[Any]:
        cfgs, owner = [], []
        for j, (_, params) in enumerate(asked):
            for cell in range(len(self.cfg.cell_configs)):
                for seed in self.cfg.tuning_seeds:
                    cfgs.append(self.cfg.run_config(params, seed, cell))
                    owner.append(j)
        judge = Judge(self.objectives, asked, runs, owner, self.cfg.multi_objective)
        results = execute_population(cfgs, on_flush=judge)
        return [judge.outcome(j, results) for j in range(len(asked))]


class Judge:
    """The population's `on_flush` for K trials' members: each trial's mean at each evaluation
    to its nested run and its pruner; its final outcome from the members' results."""

    def __init__(self, metrics, asked, runs, owner: list[int], multi: bool):
        self.metrics, self.asked, self.runs, self.multi = metrics, asked, runs, multi
        self.members = [[r for r, o in enumerate(owner) if o == j] for j in range(len(asked))]

    def score(self, metric, logged: dict[str, float] | None) -> float:
        """A member's objective value: its evaluation, or the worst value once diverged."""
        if logged is None:
            return metric.worst
        return metric.objective(logged[f"eval/{metric.name}"])

    def __call__(self, step: int, rows: dict[int, dict[str, float] | None]):
        import optuna

        stop: dict[int, BaseException] = {}
        key = f"eval/{self.metrics[0].name}"
        for j, (trial, _) in enumerate(self.asked):
            mine = [r for r in self.members[j] if r in rows]
            live = [r for r in mine if rows[r] is not None]
            if len(live) < len(mine) and math.isnan(self.metrics[0].worst):
                # a diverged member without a worst value fails the trial: stop the rest now
                error = Diverged(f"diverged: a member at step {step}, and "
                                 f"{self.metrics[0].name} declares no worst value")  # fmt: skip
                stop |= {r: error for r in live}
                continue
            if not live or any(key not in rows[r] for r in live):
                continue  # ended, or no evaluation at this step
            values = [self.score(self.metrics[0], rows[r]) for r in mine]
            mean = sum(values) / len(values)
            self.runs[j].log_metrics(step, {"objective/mean": mean})
            if self.multi or math.isnan(mean):
                continue
            trial.report(mean, step)
            if trial.should_prune():
                reason = (f"mean {self.metrics[0].name}={mean:.4g} over {len(mine)} members at "
                          f"step {step}: worse than the median")  # fmt: skip
                trial.set_user_attr("prune_reason", reason)
                stop |= {r: optuna.TrialPruned(reason) for r in mine}
        return stop

    def outcome(self, j: int, results) -> Any:
        """Trial j's value per objective (the mean over its members), or what ended it."""
        import optuna

        mine = [results[r] for r in self.members[j]]
        for res in mine:
            if isinstance(res.error, optuna.TrialPruned | Diverged):
                if isinstance(res.error, Diverged):
                    self.asked[j][0].set_user_attr("fail_reason", str(res.error))
                return res.error
            if res.error is not None:
                raise res.error  # the tracker's failure, not a result
        trial = self.asked[j][0]
        diverged = [r for r in mine if r.status == "diverged"]
        if diverged:
            steps = ", ".join(str(r.diverged_step) for r in diverged)
            trial.set_user_attr("diverged", f"{len(diverged)} of {len(mine)} members (at {steps})")
        values = [[self.score(m, None if r.status == "diverged" else r.metrics) for r in mine]
                  for m in self.metrics]  # fmt: skip
        if any(math.isnan(v) for v in values[0]):
            reason = f"diverged: {trial.user_attrs.get('diverged', 'undefined metric')}"
            trial.set_user_attr("fail_reason", reason)
            return Diverged(reason)
        trial.set_user_attr("member_values", json.dumps([round(v, 6) for v in values[0]]))
        return [sum(v) / len(v) for v in values]
