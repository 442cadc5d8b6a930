"""Optuna sweeps of a method's declared search space, with the same budget for every method.

One study per (suite, dataset, method), named `<suite>.<dataset>.<method>`, in an RDB storage
(SQLite file by default, PostgreSQL for workers on several machines). The seeded TPE sampler
starts from the method's defaults (enqueued as the first trial). A trial trains on each tuning
seed and returns the mean of the dataset's primary metric; intermediate evaluations feed the
pruner. A diverging trial ends FAIL with its reason in the user attribute `fail_reason`; the
study goes on. Every trial is a nested MLflow run under one parent run per study.

Workers heartbeat (Optuna's RDB heartbeat): a trial whose worker was killed goes stale and ends
FAIL, and a re-run only runs the trials still missing, so `--trials` is the number of trials
that complete (or are pruned, or diverge).
"""

from __future__ import annotations

import dataclasses
import datetime
import multiprocessing as mp
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError, safe_url
from bench.methods import method_registry, search_space
from bench.metrics.base import Metric
from bench.run import execute, resolve
from bench.sweep_artifacts import log_study_artifacts, study_tags
from bench.tracking import writable_dir

DONE_STATES = ("COMPLETE", "PRUNED")
PRUNERS = ("median", "halving", "none")


class Diverged(Exception):
    """A trial's training diverged; Optuna records the trial as FAIL and the study continues."""


@dataclass(frozen=True)
class SweepConfig:
    dataset: str
    method: str
    trials: int = 20
    tuning_seeds: tuple[int, ...] = (1000,)
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    suite: str = "adhoc"
    multi_objective: bool = False
    pruner: str = "median"
    sampler_seed: int = 0
    device: str = "cpu"
    data_root: str = ""  # image data sets: where their files are ("" = the default place)

    @property
    def study_name(self) -> str:
        return f"{self.suite}.{self.dataset}.{self.method}"

    def validate(self) -> None:
        """Resolve one trial's config (names, ranges, train/model options) before any work."""
        if self.trials < 1:
            raise ConfigError(f"trials={self.trials} is not allowed; allowed: >= 1")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"pruner {self.pruner!r} is unknown; choose one of: {PRUNERS}")
        if not self.tuning_seeds:
            raise ConfigError("tuning seeds are empty; give at least one")
        if not search_space_of(self):
            searchable = [n for n in method_registry.names()
                          if search_space(method_registry.get(n))]  # fmt: skip
            raise ConfigError(f"method {self.method!r} has nothing to search; sweep one of: "
                              f"{', '.join(searchable)}")  # fmt: skip
        self.run_config(default_params(self.method), self.tuning_seeds[0])

    def run_config(self, params: dict[str, float], seed: int):
        return resolve(self.dataset, [(self.method, params)], self.train, self.model, seed,
                       self.device, self.data_root)  # fmt: skip

    def objectives(self) -> list[Metric]:
        """What the study optimises: the data's primary metric, or its Pareto pair."""
        metrics = self.run_config(default_params(self.method), self.tuning_seeds[0]).metrics
        if self.multi_objective:
            return [m for m in metrics if m.pareto]
        return [m for m in metrics if m.primary]


def default_params(method: str) -> dict[str, float]:
    cls = method_registry.get(method)
    defaults = cls.config_cls()
    return {name: getattr(defaults, name) for name in search_space(cls)}


def _directions(cfg: SweepConfig) -> list[str]:
    return [m.optuna_direction for m in cfg.objectives()]


def default_storage() -> str:
    """An SQLite file beside the MLflow store, in the project folder."""
    from pathlib import Path

    return f"sqlite:///{Path('runs/optuna.db').resolve()}"


def make_storage(url: str, heartbeat: int = 10):
    """An Optuna RDB storage with heartbeats; a bad URL is a one-line ConfigError."""
    import warnings
    from pathlib import Path

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if "://" not in url:
        raise ConfigError(f"storage {url!r} is not a URL; use sqlite:///PATH or postgresql://...")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if not writable_dir(folder):
            raise ConfigError(f"storage {url!r}: folder {str(folder)!r} is not writable")
        from bench.stores import ensure_optuna_store

        ensure_optuna_store(Path(url.removeprefix("sqlite:///")))
        kwargs["connect_args"] = {"timeout": 60}  # several local workers wait on the file lock
    else:
        kwargs["pool_pre_ping"] = True
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat
        )
    except Exception as e:  # sqlalchemy's errors for bad drivers, hosts, credentials
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"storage {safe_url(url)!r} cannot be opened ({first[:200]})") from None


def open_study(cfg: SweepConfig, storage):
    import optuna

    sampler = optuna.samplers.TPESampler(seed=cfg.sampler_seed)
    pruner = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "halving": optuna.pruners.SuccessiveHalvingPruner(),
        "none": optuna.pruners.NopPruner(),
    }[cfg.pruner if not cfg.multi_objective else "none"]  # Optuna prunes single objectives only
    study = optuna.create_study(
        study_name=cfg.study_name, storage=storage, sampler=sampler, pruner=pruner,
        directions=_directions(cfg), load_if_exists=True,
    )  # fmt: skip
    if default_params(cfg.method):
        study.enqueue_trial(default_params(cfg.method), skip_if_exists=True)
    return study


def fail_dead_trials(study, storage, grace: float) -> list[int]:
    """Fail RUNNING trials whose worker is gone but that Optuna's heartbeat cannot see: a
    worker on this host that no longer exists, or a trial killed between its creation and its
    first heartbeat (it never reached the objective, which marks its worker at once)."""
    from optuna.trial import TrialState

    host, now, failed = socket.gethostname(), datetime.datetime.now(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        age = (now - t.datetime_start).total_seconds() if t.datetime_start else 0.0
        if worker is None:
            dead = age > grace
        else:
            worker_host, _, pid = worker.rpartition(":")
            dead = worker_host == host and not _pid_alive(int(pid))
        if dead and storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
            failed.append(t.number)
    return failed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def done_count(study) -> int:
    """Trials that count against the budget: completed, pruned, or failed by divergence."""
    return sum(
        t.state.name in DONE_STATES or (t.state.name == "FAIL" and "fail_reason" in t.user_attrs)
        for t in study.get_trials(deepcopy=False)
    )


class Objective:
    """Train on each tuning seed; report evaluations to the pruner; record a nested MLflow run."""

    def __init__(self, cfg: SweepConfig, tracker, experiment: str, parent):
        self.cfg, self.tracker, self.experiment, self.parent = cfg, tracker, experiment, parent
        self.objectives = cfg.objectives()

    def suggest(self, trial) -> dict[str, float]:
        cls = method_registry.get(self.cfg.method)
        return {
            name: trial.suggest_float(name, s.low, s.high, log=s.log)
            for name, s in search_space(cls).items()
        }

    def __call__(self, trial) -> float | tuple[float, ...]:
        import optuna

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = self.suggest(trial)
        tags = {"kind": "trial", "study": self.cfg.study_name, "trial": trial.number,
                "dataset": self.cfg.dataset, "method": self.cfg.method}  # fmt: skip
        flat = {f"trial.{k}": repr(v) for k, v in params.items()}
        name = f"{self.cfg.study_name}#{trial.number}"
        outcome: BaseException | None = None
        with self.tracker.start_run(self.experiment, name, tags, flat, parent=self.parent) as run:
            try:
                values = self._train(trial, run, params)
                run.log_metrics(trial.number, {f"objective/{i}": v for i, v in enumerate(values)})
                run.set_tags({"state": "COMPLETE"})
            except (optuna.TrialPruned, Diverged) as e:
                state = "PRUNED" if isinstance(e, optuna.TrialPruned) else "FAIL"
                run.set_tags({"state": state, "reason": str(e)})
                outcome = e
        if outcome is not None:
            raise outcome
        return values[0] if len(values) == 1 else tuple(values)

    def _train(self, trial, run, params) -> list[float]:
        metrics = self.objectives
        per_seed = []
        for i, seed in enumerate(self.cfg.tuning_seeds):
            cfg = self.cfg.run_config(params, seed)
            offset = i * cfg.train.steps  # pruning steps keep increasing across tuning seeds
            result = execute(cfg, on_log=self._reporter(trial, run, offset, metrics[0]))
            if result.status == "diverged":
                reason = f"diverged at step {result.diverged_step} (seed {seed})"
                trial.set_user_attr("fail_reason", reason)
                raise Diverged(reason)
            per_seed.append([m.objective(result.metrics[f"eval/{m.name}"]) for m in metrics])
        return [float(sum(v[j] for v in per_seed) / len(per_seed)) for j in range(len(metrics))]

    def _reporter(self, trial, run, offset: int, metric: Metric):
        import optuna

        def on_log(step: int, logged: dict[str, float]) -> None:
            run.log_metrics(offset + step, logged)
            key = f"eval/{metric.name}"
            if self.cfg.multi_objective or key not in logged:
                return
            value = metric.objective(logged[key])
            trial.report(value, offset + step)
            if trial.should_prune():
                reason = f"{metric.name}={value:.4g} at step {offset + step}: worse than the median"
                trial.set_user_attr("prune_reason", reason)
                raise optuna.TrialPruned(reason)

        return on_log


def work(cfg: SweepConfig, storage_url: str, n_trials: int, tracking_uri: str | None,
         experiment: str, heartbeat: int) -> None:  # fmt: skip
    """One worker: run `n_trials` trials of the study (in this process)."""
    import optuna

    from bench.tracking import MlflowTracker, NullTracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, make_storage(storage_url, heartbeat))
    tracker = NullTracker() if tracking_uri == "none" else MlflowTracker(tracking_uri)
    parent = tracker.parent_run(experiment, cfg.study_name, study_tags(cfg))
    objective = Objective(cfg, tracker, experiment, parent)
    study.optimize(objective, n_trials=n_trials, catch=(Diverged,))


def run_sweep(cfg: SweepConfig, storage_url: str, *, workers: int = 1, tracker=None,
              experiment: str = "sweeps", heartbeat: int = 10) -> dict[str, Any]:  # fmt: skip
    """Run the trials still missing from the study, on `workers` processes; summarise it."""
    import optuna

    from bench.tracking import NullTracker

    cfg.validate()
    if workers < 1:
        raise ConfigError(f"workers={workers} is not allowed; allowed: >= 1")
    tracker = tracker or NullTracker()
    storage = make_storage(storage_url, heartbeat)
    study = open_study(cfg, storage)
    optuna.storages.fail_stale_trials(study)
    fail_dead_trials(study, storage, grace=3 * heartbeat)
    tracker.parent_run(experiment, cfg.study_name, study_tags(cfg))  # before workers look for it
    remaining = max(0, cfg.trials - done_count(study))  # validate refused empty spaces
    quotas = [remaining // workers + (i < remaining % workers) for i in range(workers)]
    args = (storage_url, tracker.uri, experiment, heartbeat)
    if workers == 1 and remaining:
        work(cfg, storage_url, remaining, tracker.uri, experiment, heartbeat)
    elif remaining:
        ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch or DB state
        procs = [ctx.Process(target=work, args=(cfg, args[0], q, *args[1:])) for q in quotas if q]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"a sweep worker failed (exit codes {[p.exitcode for p in procs]})")
    return summarize(cfg, open_study(cfg, storage), tracker, experiment)


def search_space_of(cfg: SweepConfig) -> dict[str, Any]:
    return search_space(method_registry.get(cfg.method))


def best_params(cfg: SweepConfig, study) -> dict[str, float]:
    """The best completed trial's parameters (single objective), or the defaults when nothing
    completed or the method has nothing to search. Multi-objective: the Pareto trial best on
    the first objective."""
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not completed or not search_space_of(cfg):
        return default_params(cfg.method)
    sign = 1 if _directions(cfg)[0] == "minimize" else -1
    trials = study.best_trials if cfg.multi_objective else completed
    return dict(min(trials, key=lambda t: (sign * t.values[0], t.number)).params)


def summarize(cfg: SweepConfig, study, tracker, experiment: str) -> dict[str, Any]:

    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    best = best_params(cfg, study)
    parent = tracker.parent_run(experiment, cfg.study_name, study_tags(cfg))
    log_study_artifacts(cfg, study, tracker, parent, best)
    tracker.finish(parent)
    return {"study": cfg.study_name, "trials": len(trials), "done": done_count(study),
            **{s.lower(): n for s, n in states.items()}, "best_params": best,
            "config": dataclasses.asdict(cfg)}  # fmt: skip
