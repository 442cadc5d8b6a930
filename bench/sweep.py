"""Optuna sweeps of a method's declared search space, with the same budget for every method.

One study per (suite, dataset, method), named `<suite>.<dataset>.<method>`, in an RDB storage
(SQLite file by default, PostgreSQL for workers on several machines). The seeded TPE sampler
starts from the method's defaults (enqueued as the first trial). A trial trains every
(objective cell, tuning seed) as one population and returns the mean of the data set's primary
metric over them; the mean at each evaluation feeds the pruner (bench/objective.py). Every trial
is a nested MLflow run under one parent run per study.

Workers heartbeat (Optuna's RDB heartbeat): a trial whose worker was killed goes stale and ends
FAIL, and a re-run only runs the trials still missing, so `--trials` is the number of trials
that complete (or are pruned, or diverge).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import math
import multiprocessing as mp
import os
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, mask_secrets, safe_url
from bench.methods import method_registry, search_space
from bench.metrics.base import Metric
from bench.objective import Diverged, Objective
from bench.resources import fitting_population
from bench.run import population_key, resolve, with_params
from bench.sweep_artifacts import log_study_artifacts, study_tags
from bench.system import owner_alive, sqlite_file

DONE_STATES = ("COMPLETE", "PRUNED")
PRUNERS = ("median", "halving", "none")
SAMPLER_ROUNDS = 4  # `auto` populations: the sampler sees results at least this many times


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
    population: int | str = 1  # trials trained at once as one population (or "auto")
    # The trial's RunConfig at the method's defaults, already resolved (a suite's plan hands
    # over its reference cell's); None: `resolved` resolves it, once.
    base: Any = field(default=None, compare=False, repr=False)
    # The objective's other cells (a suite's stress cells that differ from the reference in
    # member fields only), each the plan's resolved config at the method's defaults: a trial
    # trains every (cell, tuning seed) and scores the mean over them.
    cells: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    @functools.cached_property
    def resolved(self):
        """The study's one resolution: the trial config at the method's defaults."""
        if self.base is not None:
            return self.base
        return resolve(self.dataset, [(self.method, default_params(self.method))], self.train,
                       self.model, self.tuning_seeds[0], self.device, self.data_root)  # fmt: skip

    @property
    def cell_configs(self) -> tuple[Any, ...]:
        """The objective's cells: the reference, then the others."""
        return (self.resolved, *self.cells)

    @property
    def members_per_trial(self) -> int:
        return len(self.cell_configs) * len(self.tuning_seeds)

    @property
    def study_name(self) -> str:
        """`<suite>.<dataset>.<method>`, and `#s<k>` for sampler seed k > 0 (a second sweep)."""
        seed = f"#s{self.sampler_seed}" if self.sampler_seed else ""
        return f"{self.suite}.{self.dataset}.{self.method}{seed}"

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
        key = population_key(self.resolved)
        for cfg in self.cells:
            if population_key(cfg) != key:
                raise ConfigError(
                    f"sweep {self.study_name}: an objective cell differs from the reference in "
                    "more than member fields (learning rates, betas); tune over such cells only"
                )
        if self.resolved.train.amp and self.members_per_trial > 1:
            raise ConfigError(
                f"sweep {self.study_name}: amp=true cannot train a trial's "
                f"{self.members_per_trial} members (tuning seeds x cells) as one population; "
                "use one tuning seed and no stress cells, or amp=false"
            )
        self.population_size(1)

    def objective_mark(self) -> str:
        """What a trial's value means: its members (tuning seeds, each cell's member values)
        and length. A stored study with another mark holds values of another objective."""
        from bench.config import TrainConfig
        from bench.params import member_fields

        fields = sorted(member_fields(TrainConfig))
        cells = [[getattr(c.train, f) for f in fields] for c in self.cell_configs]
        return json.dumps({"seeds": list(self.tuning_seeds), "cells": cells,
                           "steps": self.resolved.train.steps})  # fmt: skip

    def population_size(self, workers: int) -> int:
        """Trials per population (see `sweep_population`), each trial `members_per_trial`
        members, all of them checked against free memory."""
        cfg, n = self.resolved, self.members_per_trial
        k = sweep_population(self.population, cfg.model.kind, self.device, self.trials, workers)
        return max(1, fitting_population(cfg, k * n, self.population) // n)

    def run_config(self, params: dict[str, float], seed: int, cell: int = 0):
        """A trial's member: the cell's resolution with the trial's values and seed."""
        return dataclasses.replace(with_params(self.cell_configs[cell], params), seed=seed)

    def objectives(self) -> list[Metric]:
        """What the study optimises: the data's primary metric, or its Pareto pair."""
        metrics = self.resolved.metrics
        if self.multi_objective:
            return [m for m in metrics if m.pareto]
        return [m for m in metrics if m.primary]


def sweep_population(requested: int | str, kind: str, device: str, trials: int,
                     workers: int) -> int:  # fmt: skip
    """Trials per population: `requested`, at most an equal share of the budget per worker so
    that every worker has trials. `auto`: 1 on CPU, where pruning is what saves a sweep's time
    and a pruned member of a population computes on until its population ends; on a GPU the
    device's size, with at least SAMPLER_ROUNDS populations per study, since trials of one
    population are suggested before any of them is told."""
    from bench.workers import choose_population

    k = choose_population(requested, kind, device)
    if requested == "auto":
        k = 1 if device.startswith("cpu") else min(k, trials // SAMPLER_ROUNDS)
    return max(1, min(k, -(-trials // workers)))


def default_params(method: str) -> dict[str, float]:
    cls = method_registry.get(method)
    defaults = cls.config_cls()
    return {name: getattr(defaults, name) for name in search_space(cls)}


def _directions(cfg: SweepConfig) -> list[str]:
    return [m.optuna_direction for m in cfg.objectives()]


def default_storage() -> str:
    """An SQLite file beside the MLflow store, in the project folder."""
    return f"sqlite:///{Path('runs/optuna.db').resolve()}"


def make_storage(url: str, heartbeat: int = 10):
    """An Optuna RDB storage with heartbeats; a bad URL is a one-line ConfigError."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no per-study chatter on stderr
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # We run trials with ask/tell and keep their heartbeat ourselves (`beating`).
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    if "://" not in url:
        raise ConfigError(f"storage {url!r} is not a URL; use sqlite:///PATH or postgresql://...")
    kwargs: dict[str, Any] = {}
    if url.partition("://")[0].partition("+")[0] == "sqlite":
        from bench.stores import ensure_optuna_store

        ensure_optuna_store(sqlite_file(url, "storage"))  # a study in memory would be lost
        kwargs["connect_args"] = {"timeout": 60}  # several local workers wait on the file lock
    else:
        kwargs["pool_pre_ping"] = True
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat
        )
    except Exception as e:  # sqlalchemy's errors for bad drivers, hosts, credentials
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = mask_secrets(first, url)
        raise ConfigError(f"storage {safe_url(url)!r} cannot be opened ({first[:200]})") from None


def make_sampler(cfg: SweepConfig, trial_number: int = 0):
    """TPE seeded by (study seed, trial number): workers and concurrent invocations draw
    distinct values, and a trial's draw does not depend on which worker ran it. The constant
    liar treats trials still running as bad results, so TPE does not propose them again."""
    import optuna

    seed = (cfg.sampler_seed * 1_000_003 + trial_number) % 2**32
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def open_study(cfg: SweepConfig, storage):
    import optuna

    pruner = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "halving": optuna.pruners.SuccessiveHalvingPruner(),
        "none": optuna.pruners.NopPruner(),
    }[cfg.pruner if not cfg.multi_objective else "none"]  # Optuna prunes single objectives only
    return optuna.create_study(
        study_name=cfg.study_name, storage=storage, sampler=make_sampler(cfg), pruner=pruner,
        directions=_directions(cfg), load_if_exists=True,
    )  # fmt: skip


def check_objective(cfg: SweepConfig, study) -> None:
    """A sweep records its study's objective when it first runs it; then it resumes the study
    only under the objective its trials were scored by (one line, before any trial,
    otherwise)."""
    mark, got = cfg.objective_mark(), study.user_attrs.get("objective")
    if got is None:  # new (or stored by code before objectives were recorded: trusted)
        study.set_user_attr("objective", mark)
    elif got != mark:
        raise ConfigError(
            f"study {cfg.study_name!r} holds trials scored by another objective (other tuning "
            "seeds, cells or length, or an older version of the harness); give another --suite "
            "name or delete the study from the storage"
        )


def counts_toward_budget(t) -> bool:
    """Completed, pruned, diverged (a result), or running: a trial killed with its worker does
    not count (it is redone), nor does one started past the budget."""
    state = t.state.name
    return state in (*DONE_STATES, "RUNNING") or (state == "FAIL" and "fail_reason" in t.user_attrs)


def enqueue_defaults(cfg: SweepConfig, study) -> None:
    """Queue the method's defaults as a trial unless one with them is queued, running or done;
    a default trial that was killed is queued again (the report says tuning started there)."""
    defaults = default_params(cfg.method)
    if not defaults:
        return
    for t in study.get_trials(deepcopy=False):
        params = t.system_attrs.get("fixed_params", t.params)
        same = params.keys() == defaults.keys() and all(
            math.isclose(float(params[k]), float(v), rel_tol=1e-12) for k, v in defaults.items()
        )
        if same and (t.state.name == "WAITING" or counts_toward_budget(t)):
            return
    study.enqueue_trial(defaults)


def reconcile(cfg: SweepConfig, study, storage, heartbeat: int) -> list[int]:
    """Fail the trials of dead workers and queue the defaults again if they were lost; under a
    file lock for a local store so that concurrent invocations do not queue them twice."""
    import optuna

    with _study_lock(storage):
        optuna.storages.fail_stale_trials(study)
        failed = fail_dead_trials(study, storage, grace=3 * heartbeat)
        enqueue_defaults(cfg, study)
    return failed


@contextmanager
def _study_lock(storage):
    url = str(storage.engine.url)
    if url.startswith("sqlite:///"):
        from bench.stores import locked

        with locked(Path(url.removeprefix("sqlite:///"))):
            yield
    else:  # a shared database: concurrent queueing is rare and costs one duplicate trial
        yield


def fail_dead_trials(study, storage, grace: float) -> list[int]:
    """Fail RUNNING trials whose worker is gone but that Optuna's heartbeat cannot see: a
    worker on this host that no longer exists, or a trial killed between its creation and its
    first heartbeat (its worker is recorded right after it is asked)."""
    from optuna.trial import TrialState

    now, failed = datetime.datetime.now(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        age = (now - t.datetime_start).total_seconds() if t.datetime_start else 0.0
        if worker is None:
            dead = age > grace
        else:  # the rule of MLflow runs: gone from this host, or its pid now someone else's
            started = (t.datetime_start or now).timestamp() * 1000
            dead = not owner_alive(str(worker), int(started))
        if dead and storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
            failed.append(t.number)
    return failed


def done_count(study) -> int:
    """Trials that count against the budget and are over: completed, pruned, or diverged."""
    return sum(counts_toward_budget(t) and t.state.name != "RUNNING"
               for t in study.get_trials(deepcopy=False))  # fmt: skip


def run_trials(cfg: SweepConfig, study, storage, objective, heartbeat: int, k: int = 1) -> None:
    """Ask, train, tell, until the storage counts the study's budget; up to `k` trials at a
    time, trained as one population. The budget is read from the storage before each ask, so
    concurrent workers and invocations stop at exactly `cfg.trials`: a trial asked past it
    (numbers are assigned by the storage, in order) is marked `over_budget`, failed before it
    trains, and excluded from every count and curve."""
    from optuna.trial import TrialState

    while True:
        reconcile(cfg, study, storage, heartbeat)
        counted = sum(map(counts_toward_budget, study.get_trials(deepcopy=False)))
        if counted >= cfg.trials:
            return
        asked, over = [], False
        try:
            for _ in range(min(k, cfg.trials - counted)):
                # Optuna takes a queued trial by read-then-write, which SQLite does not lock
                # (FOR UPDATE is PostgreSQL's): two local workers both took the queued
                # defaults, trained them twice, and the second failed telling it.
                with _study_lock(storage):
                    trial = study.ask()
                asked.append(trial)
                trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
                earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
                if sum(map(counts_toward_budget, earlier)) >= cfg.trials:
                    trial.set_user_attr("over_budget", True)
                    study.tell(asked.pop(), state=TrialState.FAIL)
                    over = True
                    break
            params = []
            for trial in asked:
                study.sampler = make_sampler(cfg, trial.number)  # before its first suggest
                params.append(objective.suggest(trial))
        except BaseException:  # stopped between ask and training: not left RUNNING, counted
            _fail_untold(study, asked)
            raise
        _train_and_tell(study, storage, objective, list(zip(asked, params, strict=True)),
                        heartbeat)  # fmt: skip
        if over:
            return


def _fail_untold(study, trials) -> None:
    from optuna.trial import TrialState

    for trial in trials:
        with contextlib.suppress(Exception):  # already told, or the storage is away
            study.tell(trial, state=TrialState.FAIL)


def _train_and_tell(study, storage, objective, asked, heartbeat: int) -> None:
    import optuna
    from optuna.trial import TrialState

    if not asked:
        return
    with contextlib.ExitStack() as stack:
        for trial, _ in asked:
            stack.enter_context(beating(storage, trial._trial_id, heartbeat))
        try:
            outcomes = objective.run_many(asked)
        except BaseException:
            for trial, _ in asked:
                study.tell(trial, state=TrialState.FAIL)  # Ctrl-C or a bug: not a result
            raise
    for (trial, _), outcome in zip(asked, outcomes, strict=True):
        if isinstance(outcome, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
        elif isinstance(outcome, Diverged):
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, outcome)


@contextmanager
def beating(storage, trial_id: int, interval: int):
    """Record the trial's heartbeat every `interval` seconds while it runs (Optuna's stale-trial
    detection fails it when the worker stops beating)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def work(cfg: SweepConfig, storage_url: str, tracking_uri: str | None, experiment: str,
         heartbeat: int, workers: int = 1) -> None:  # fmt: skip
    """One worker: run trials of the study (in this process) until its budget is reached."""
    import optuna

    from bench.tracking import MlflowTracker, NullTracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_url, heartbeat)
    study = open_study(cfg, storage)
    tracker = NullTracker() if tracking_uri == "none" else MlflowTracker(tracking_uri)
    parent = tracker.parent_run(experiment, cfg.study_name, study_tags(cfg))
    objective = Objective(cfg, tracker, experiment, parent)
    run_trials(cfg, study, storage, objective, heartbeat, cfg.population_size(workers))


def _worker(*args) -> None:
    """A worker process: one line on stderr and an exit code instead of a traceback."""
    from bench.workers import Stopped, exit_now, stop_on_sigterm, worker_init

    worker_init()
    stop_on_sigterm()  # the parent stops its workers on Ctrl-C and SIGTERM
    try:
        work(*args)
    except Stopped as e:  # its trial is failed and its run KILLED by now
        exit_now(int(e.code))
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigError as e:
        print(f"error: {mask_secrets(str(e))}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        print(f"sweep worker {os.getpid()} failed: {type(e).__name__}: "
              f"{mask_secrets(str(e))}", file=sys.stderr)  # fmt: skip
        sys.exit(1)


def run_sweep(cfg: SweepConfig, storage_url: str, *, workers: int = 1, tracker=None,
              experiment: str = "sweeps", heartbeat: int = 10) -> dict[str, Any]:  # fmt: skip
    """Run the trials still missing from the study, on `workers` processes; summarise it. A
    worker that dies is reported in one line and its share is finished in this process."""
    from bench.tracking import NullTracker

    cfg.validate()
    if workers < 1:
        raise ConfigError(f"workers={workers} is not allowed; allowed: >= 1")
    tracker = tracker or NullTracker()
    storage = make_storage(storage_url, heartbeat)
    study = open_study(cfg, storage)
    check_objective(cfg, study)
    reconcile(cfg, study, storage, heartbeat)
    tracker.reconcile(experiment)  # MLflow runs left RUNNING by dead processes
    tracker.parent_run(experiment, cfg.study_name, study_tags(cfg))  # before workers look for it
    args = (cfg, storage_url, tracker.uri, experiment, heartbeat, workers)
    if workers > 1 and done_count(study) < cfg.trials:
        _run_workers(cfg.study_name, args, workers)
    work(*args)  # with workers: returns at once unless one died and left trials undone
    return summarize(cfg, open_study(cfg, storage), tracker, experiment)


def _run_workers(study_name: str, args: tuple, workers: int) -> None:
    """`work` on `workers` processes until they end. Ctrl-C or SIGTERM to this process stops
    them all within seconds (bench.workers.stop_processes), their trials failed and runs
    KILLED, and is raised on: no worker trains on after the command has ended."""
    from bench.workers import stop_processes

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch or DB state
    procs = [ctx.Process(target=_worker, args=args) for _ in range(workers)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    except BaseException:
        stop_processes(procs)
        raise
    dead = [f"{p.pid} (exit code {p.exitcode})" for p in procs if p.exitcode != 0]
    if dead:
        print(f"sweep {study_name}: worker {', '.join(dead)} stopped early; finishing its "
              "share in this process", file=sys.stderr)  # fmt: skip


def search_space_of(cfg: SweepConfig) -> dict[str, Any]:
    return search_space(method_registry.get(cfg.method))  # before resolving: a clear error


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

    trials = [t for t in study.get_trials(deepcopy=False) if "over_budget" not in t.user_attrs]
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    best = best_params(cfg, study)
    parent = tracker.parent_run(experiment, cfg.study_name, study_tags(cfg))
    log_study_artifacts(cfg, study, tracker, parent, best)
    tracker.finish(parent)
    return {"study": cfg.study_name, "trials": len(trials), "done": done_count(study),
            **{s.lower(): n for s, n in states.items()}, "best_params": best,
            "config": {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                       if f.name != "base"}}  # fmt: skip
