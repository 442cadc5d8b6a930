"""Suites: datasets x methods x seeds, run resumably and recorded in one MLflow experiment.

A suite is a Python preset (`quick`, `full`) or a TOML file with the same fields:

    name = "mine"
    datasets = ["ring8"]
    seeds = [0, 1, 2]
    methods = [["none", {}], ["norm_clip", {max_norm = "1.0"}]]
    [train]
    steps = 1000
    [model]
    hidden = 64
    [axes]                       # optional: the cells are the cross product of the axes
    lr_mult = [1, 10, 30]        # any training or model field; the first value of each axis
    optimizer = ["adam", "sgd"]  # is the reference cell (main tables, tuning)

`cells = [{lr_mult = 1}, {beta1 = 0.9}]` lists the cells instead of the cross product; a
`[per_dataset.NAME.axes]` table gives one data set its own axes. The suite is resolved once into
a plan (bench/plan.py), validated whole before any store, sweep or run exists.

Re-running a suite skips every (config hash, seed) already finished in MLflow and redoes only the
missing, failed or killed ones; interrupted work never loses a finished run nor duplicates one.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.config import ModelSpec, TrainConfig
from bench.errors import ConfigError
from bench.methods import BASELINE, method_registry, search_space
from bench.params import cli_fields, to_text
from bench.plan import RECIPE_POLICIES, Cell, Entry, Plan, build_plan, check_populations, make_cells
from bench.record import config_hash, run_tracked_population
from bench.sweep import SweepConfig, default_storage, run_sweep
from bench.workers import choose_population


def all_methods() -> tuple[tuple[str, dict], ...]:
    """Every registered method (plugins included), the baseline first."""
    names = [BASELINE] + [n for n in method_registry.names() if n != BASELINE]
    return tuple((n, {}) for n in names)


ALL_METHODS = all_methods()
SUITE_KEYS = ("name", "datasets", "methods", "seeds", "train", "model", "sweep", "per_dataset",
              "axes", "cells", "on_recipe_conflict", "replication_seeds")  # fmt: skip
SWEEP_KEYS = ("trials", "tuning_seeds", "train", "pruner", "sampler_seeds")
PER_DATASET_KEYS = ("train", "model", "sweep_train", "data_root", "axes", "methods")
MOVED = {"lr_mults": "lr_mults became an axis: write [axes] lr_mult = [1, 10, ...]"}


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[str, ...]
    methods: tuple[tuple[str, dict[str, str]], ...]
    seeds: tuple[int, ...]
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    # Optional tuning: {"trials", "tuning_seeds", "train" (overrides for tuning runs), "pruner"}
    sweep: dict[str, Any] | None = None
    # Per data set overrides: {"fashion-mnist": {"model": {"d_capacity": 0.25}, "train": {...},
    # "sweep_train": {...}, "data_root": "/path/to/files", "axes": {...}}}
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {field: (values...)}: every method runs in every cell of their cross product (or in the
    # listed `cells`); the first cell is the reference (main tables, tuning).
    axes: dict[str, tuple] = field(default_factory=dict)
    cells_list: tuple[dict[str, Any], ...] | None = None
    # When an axis sets a field a method's recipe sets too (loss for weight_clip): which wins.
    on_recipe_conflict: str = ""
    # A second, disjoint set of reporting seeds: the report says which claims replicate on it.
    replication_seeds: tuple[int, ...] = ()

    def all_seeds(self) -> list[tuple[int, str]]:
        """(seed, seed set) of every reporting run: the seeds, then the replication seeds."""
        return [(s, "main") for s in self.seeds] + [
            (s, "replication") for s in self.replication_seeds
        ]

    def data_root(self, dataset: str) -> str:
        return str(self.per_dataset.get(dataset, {}).get("data_root", ""))

    def settings(self, dataset: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(train, model) options for runs on `dataset`."""
        extra = self.per_dataset.get(dataset, {})
        return self.train | extra.get("train", {}), self.model | extra.get("model", {})

    def methods_for(self, dataset: str) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The methods run on `dataset`: its own list where it has one (a control's known
        answer needs its own method, e.g. R1 on the Dirac-GAN), else the suite's."""
        return self.per_dataset.get(dataset, {}).get("methods", self.methods)

    def cells(self, dataset: str) -> tuple[Cell, ...]:
        """The cells on `dataset`: its own axes where it has them (their cross product), else
        the suite's (axes, or the listed cells)."""
        own = self.per_dataset.get(dataset, {}).get("axes")
        if own is not None:
            return make_cells(own, None, f"suite {self.name!r}, {dataset}")
        return make_cells(self.axes, self.cells_list, f"suite {self.name!r}")

    def plan(self, device: str = "cpu") -> Plan:
        """The suite resolved once into its plan (checked first)."""
        self.check()
        return build_plan(self, device)

    def check(self) -> None:
        """What needs no resolution: non-empty lists, no duplicate, seeds apart, a policy."""
        where = f"suite {self.name!r}"
        for key in ("datasets", "methods", "seeds"):
            if not getattr(self, key):
                raise ConfigError(f"{where}: {key} is empty; give at least one")
        _no_duplicates(where, "seed", self.seeds + self.replication_seeds)
        _no_duplicates(where, "dataset", self.datasets)
        for dataset in self.datasets:
            methods = self.methods_for(dataset)
            if not methods:
                raise ConfigError(f"{where}: {dataset}'s methods are empty; give at least one")
            _no_duplicates(where, "method", [
                n + "".join(f" {k}={to_text(v)}" for k, v in sorted(p.items()))
                for n, p in methods
            ])  # fmt: skip
        if self.on_recipe_conflict not in ("", *RECIPE_POLICIES):
            raise ConfigError(f"{where}: on_recipe_conflict={self.on_recipe_conflict!r} is not "
                              f"allowed; allowed: {', '.join(RECIPE_POLICIES)}")  # fmt: skip
        for s in self.seeds + self.replication_seeds:
            if not 0 <= s < 2**63:
                raise ConfigError(f"{where}: seed={s} is not allowed; allowed: 0 .. 2**63-1")
        if self.sweep:
            self._check_sweep(where)

    def _check_sweep(self, where: str) -> None:
        tuning = self.sweep.get("tuning_seeds", ())
        _no_duplicates(where, "tuning seed", tuning)
        overlap = set(tuning) & set(self.seeds + self.replication_seeds)
        if overlap:
            raise ConfigError(
                f"{where}: seeds {sorted(overlap)} are both tuning and reporting "
                "seeds; tuning seeds must not be reporting seeds"
            )

    def sweep_configs(self, plan: Plan, population: int | str = 1) -> list[SweepConfig]:
        """One SweepConfig per (dataset, method) that has something to search, each
        validated. Its objective is the mean over the reference cell and every stress cell that
        differs from it in member fields only (the plan's resolved configs), so the threshold
        is chosen once for the study, set and left alone across the cells as its users would;
        tuning runs with settings of their own tune at the reference alone."""
        if not self.sweep:
            return []
        s, out = self.sweep, []
        for dataset in self.datasets:
            extra = dict(s.get("train", {})) | self.per_dataset.get(dataset, {}).get(
                "sweep_train", {})  # fmt: skip
            for name, params in self.methods_for(dataset):
                if params:  # a method given its values is a row as given, never tuned
                    continue
                entry = plan.reference(dataset, name)
                if entry is None or not search_space(entry.config.methods[0].cls):
                    continue
                train, model = self.settings(dataset)
                opts = entry.cell.options(entry.recipe_wins)
                cfg = SweepConfig(
                    dataset, name, int(s.get("trials", 20)), tuple(s.get("tuning_seeds", (1000,))),
                    train=train | opts["train"] | extra, model=model | opts["model"],
                    suite=self.name, pruner=s.get("pruner", "median"),
                    device=entry.config.device, data_root=self.data_root(dataset),
                    population=population, base=None if extra else entry.config,
                    cells=() if extra else plan.stress_configs(dataset, name),
                )  # fmt: skip
                cfg.validate()
                # The first sampler seed's choice is the tuned row; a second sweep with
                # another seed shows in the report how sure that choice is.
                out += [dataclasses.replace(cfg, sampler_seed=k)
                        for k in s.get("sampler_seeds", (0,))]  # fmt: skip
        return out


def _no_duplicates(where: str, what: str, values) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{where}: {what} {v} is given twice; give each {what} once")
        seen.add(v)


# The calibrated 2-D protocols (reports/calibration.md, `make calibrate`): the baseline's median
# hq_fraction reaches the 0.85 gate over 10 seeds, and on grid25 it still misses modes on 6 of
# them, so a stabilizer has something to fix.
RING8 = {"steps": 5000, "eval_every": 1000, "log_every": 100}
GRID25 = {"steps": 10000, "eval_every": 2000, "log_every": 100, "lr_g": 1e-3, "lr_d": 1e-3}
# Sweeps tune at the reporting length, 8 trials for every method, each trial the mean over
# 8 tuning seeds in every cell of the study that differs from the reference in member fields
# (bench/objective.py); a second sweep with another sampler seed shows how sure the choice is.
SWEEP = {"trials": 8, "tuning_seeds": tuple(range(100, 108)), "pruner": "median",
         "sampler_seeds": (0, 1)}  # fmt: skip
# Every method at its published default (bench/methods: value clipping at the article's 0.01,
# norm clipping at 1.0, ZClip z 2.5 / alpha 0.97, AGC 0.01, R1 gamma 10), frozen across cells.
QUICK_METHODS = ((BASELINE, {}), ("value_clip", {}), ("norm_clip", {}), ("zclip", {}))
STANDARD_METHODS = (*QUICK_METHODS, ("agc", {}), ("r1", {}))
# The learning-rate ladder on ring8 from reports/calibration-stress.md (`make calibrate-stress`,
# 2026-12-07): the baseline succeeds on 10/10 seeds at x1, 8/10 at x10, 6/10 at x20, 3/10 at
# x30, 1/10 at x50, 0/10 at x100; 2/10 with Adam's beta1 = 0.9.
QUICK_AXES = {"lr_mult": (1.0, 20.0, 50.0)}
# The known-answer control, first in every study's report: the Dirac-GAN (bench/datasets/dirac.py),
# where unregularised training provably never converges and R1 does for small enough steps. R1
# at gamma 1 (its published 10 is for images: it overshoots at step 0.1 here); the step size
# from 0.1 (x1) to 1.0 (x10, R1 still converges) and 3.0 (x30, where everything diverges).
DIRAC = {"methods": (*QUICK_METHODS, ("r1", {"gamma": "1.0"})),
         "axes": {"lr_mult": (1.0, 10.0, 30.0)}}  # fmt: skip
STANDARD_CELLS = ({"lr_mult": 1.0}, {"lr_mult": 10.0}, {"lr_mult": 20.0}, {"lr_mult": 50.0},
                  {"beta1": 0.9})  # fmt: skip

PRESETS = {
    # `make bench`: the smallest stability study that answers the question on 2 cores in about
    # 30 minutes: ring8, the baseline, the article's value clipping, norm clipping and one
    # adaptive clipper at their published defaults, the learning-rate ladder from where the
    # baseline trains (x1) through its edge (x20) to where it fails (x50), 10 seeds each.
    "quick": Suite(
        "quick", ("dirac", "ring8"), QUICK_METHODS, tuple(range(10)),
        per_dataset={"dirac": DIRAC, "ring8": {"train": RING8}}, axes=QUICK_AXES,
    ),
    # The study with more methods and cells, each searchable method tuned once for the study
    # (a second row beside its default; a second sampler seed's choice reported beside), and
    # every run again on a disjoint seed set (10-19) so that the report marks which claims
    # replicate. About 15 M run-steps (tuning 2 x 8 trials x 40 members per method, most of it):
    # projected 8-10 hours on 2 cores at this machine's ~500 run-steps/s, so run it in parts
    # (it resumes) or on a GPU.
    "standard": Suite(
        "standard", ("dirac", "ring8"), STANDARD_METHODS, tuple(range(10)), sweep=SWEEP,
        per_dataset={"dirac": DIRAC, "ring8": {"train": RING8}}, cells_list=STANDARD_CELLS,
        replication_seeds=tuple(range(10, 20)),
    ),
    # For a GPU: 20 trials (each on 8 tuning seeds in every lr cell: 32 members, two sampler
    # seeds), 10 reporting seeds, the stability map, images too.
    # Fashion-MNIST's 20,000 steps are 2.5x the step where the baseline's KID stops falling
    # (8,000; reports/calibration-fashion-mnist.md); the stacked sets are not calibrated yet.
    "full": Suite(
        "full", ("ring8", "grid25", "stacked-digits", "stacked-fashion-mnist", "fashion-mnist"),
        ALL_METHODS, tuple(range(10)),
        train={"steps": 20000, "eval_every": 1000, "log_every": 100},
        sweep=SWEEP | {"trials": 20},
        per_dataset={
            "ring8": {"train": RING8}, "grid25": {"train": GRID25},
            "stacked-fashion-mnist": {"model": {"d_capacity": 0.25}},
            "fashion-mnist": {"model": {"d_capacity": 0.25}},
        },
        axes={"lr_mult": (1.0, 3.0, 10.0, 30.0)},
    ),
    # Seconds: for tests and smoke checks.
    "micro": Suite(
        "micro", ("ring8",), ((BASELINE, {}), ("norm_clip", {})), (0, 1),
        train={"steps": 20, "batch_size": 32, "eval_every": 10, "log_every": 5,
               "eval_samples": 200},
        model={"hidden": 16},
    ),
}  # fmt: skip


def load_suite(name_or_path: str) -> Suite:
    """A preset by name, or a TOML file; errors name the bad value."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if not path.suffix == ".toml":
        raise ConfigError(
            f"unknown suite {name_or_path!r}; use one of: {', '.join(PRESETS)} or a .toml file"
        )
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"suite file {str(path)!r} cannot be read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"suite file {str(path)!r} is not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"suite file {str(path)!r} is not valid TOML ({e})") from None
    return suite_from_dict(raw, path.stem, str(path))


def _keys(where: str, table: Any, allowed: tuple[str, ...]) -> dict:
    """`table` as a dict whose keys are all in `allowed`; one-line errors otherwise."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, not {table!r}")
    for key in table:
        if key in MOVED:
            raise ConfigError(f"{where}: {MOVED[key]}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return table


def _list(where: str, value: Any, kind: type) -> tuple:
    kinds = (int, float) if kind is float else kind  # TOML writes 3 for 3.0
    if not isinstance(value, list) or not all(
        isinstance(v, kinds) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"{where} must be a list of {kind.__name__}s, not {value!r}")
    return tuple(kind(v) for v in value) if kind is float else tuple(value)


def _scalar(where: str, value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where} must be a {kind.__name__}, not {value!r}")
    return value


def _train(where: str, table: Any) -> dict:
    return dict(_keys(where, table, cli_fields(TrainConfig)))


def _model(where: str, table: Any) -> dict:
    return dict(_keys(where, table, cli_fields(ModelSpec)))


def _sweep(where: str, raw: Any) -> dict | None:
    if raw is None:
        return None
    sweep = dict(_keys(f"{where}: [sweep]", raw, SWEEP_KEYS))
    if "trials" in sweep:
        trials = _scalar(f"{where}: [sweep] trials", sweep["trials"], int)
        if trials < 1:
            raise ConfigError(f"{where}: [sweep] trials={trials} is not allowed; allowed: >= 1")
    if "tuning_seeds" in sweep:
        sweep["tuning_seeds"] = _list(f"{where}: [sweep] tuning_seeds",
                                      sweep["tuning_seeds"], int)  # fmt: skip
        if not sweep["tuning_seeds"]:
            raise ConfigError(f"{where}: [sweep] tuning_seeds is empty; give at least one")
    if "pruner" in sweep:
        _scalar(f"{where}: [sweep] pruner", sweep["pruner"], str)
    if "sampler_seeds" in sweep:
        seeds = _list(f"{where}: [sweep] sampler_seeds", sweep["sampler_seeds"], int)
        if not seeds or len(set(seeds)) < len(seeds) or min(seeds) < 0:
            raise ConfigError(f"{where}: [sweep] sampler_seeds={list(seeds)} is not allowed; "
                              "allowed: distinct integers >= 0, at least one")  # fmt: skip
        sweep["sampler_seeds"] = seeds
    sweep["train"] = _train(f"{where}: [sweep.train]", sweep.get("train", {}))
    return sweep


def _per_dataset(where: str, raw: Any, datasets: tuple[str, ...]) -> dict:
    out = {}
    for name, extra in _keys(f"{where}: [per_dataset]", raw, datasets).items():
        at = f"{where}: [per_dataset.{name}]"
        extra = dict(_keys(at, extra, PER_DATASET_KEYS))
        for key in ("train", "sweep_train"):
            if key in extra:
                extra[key] = _train(f"{at} {key}", extra[key])
        if "model" in extra:
            extra["model"] = _model(f"{at} model", extra["model"])
        if "axes" in extra:
            extra["axes"] = dict(_keys(f"{at} axes", extra["axes"], _axis_fields()))
        if "data_root" in extra:
            _scalar(f"{at} data_root", extra["data_root"], str)
        if "methods" in extra:
            extra["methods"] = _methods(f"{at} methods", extra["methods"])
        out[name] = extra
    return out


def _axis_fields() -> tuple[str, ...]:
    return cli_fields(TrainConfig) + cli_fields(ModelSpec)


def suite_from_dict(raw: dict, default_name: str, where: str = "suite") -> Suite:
    """A Suite from a parsed TOML table; every key and type checked at every level."""
    _keys(f"suite file {where!r}", raw, SUITE_KEYS)
    datasets = _list(f"{where}: datasets", raw.get("datasets", ["ring8"]), str)
    cells = raw.get("cells")
    suite = Suite(
        name=_scalar(f"{where}: name", raw.get("name", default_name), str),
        datasets=datasets,
        methods=_methods(f"{where}: methods", raw.get("methods", [[BASELINE, {}]])),
        seeds=_list(f"{where}: seeds", raw.get("seeds", [0]), int),
        train=_train(f"{where}: [train]", raw.get("train", {})),
        model=_model(f"{where}: [model]", raw.get("model", {})),
        sweep=_sweep(where, raw.get("sweep")),
        per_dataset=_per_dataset(where, raw.get("per_dataset", {}), datasets),
        axes=dict(_keys(f"{where}: [axes]", raw.get("axes", {}), _axis_fields())),
        cells_list=None if cells is None else tuple(cells) if isinstance(cells, list) else cells,
        on_recipe_conflict=_scalar(f"{where}: on_recipe_conflict",
                                   raw.get("on_recipe_conflict", ""), str),
        replication_seeds=_list(f"{where}: replication_seeds", raw.get("replication_seeds", []),
                                int),
    )  # fmt: skip
    suite.check()
    for dataset in suite.datasets:
        suite.cells(dataset)  # axis fields, values and cells, before anything resolves
    return suite


def _methods(where: str, methods: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    if not isinstance(methods, list):
        raise ConfigError(f"{where} must be a list, not {methods!r}")
    return tuple(_method_entry(m, where) for m in methods)


def _method_entry(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    """ "name" or ["name", {param = value}]; the values stay typed (texts are parsed later)."""
    if isinstance(item, str):
        item = [item, {}]
    if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
            and isinstance(item[1], dict)):  # fmt: skip
        raise ConfigError(f'{where}: method entry {item!r} must be "name" or ["name", {{...}}]')
    name, params = item
    method_registry.get(name)
    return name, dict(params)


Tuned = dict[tuple[str, str], dict[str, float]]  # (dataset, method) -> chosen parameters


@dataclass
class Prepared:
    """A suite resolved and validated whole: its plan, its sweeps, its populations."""

    suite: Suite
    plan: Plan
    sweeps: list[SweepConfig]
    population: int | str
    jobs: int


def prepare(suite: Suite, device: str, population: int | str = 1, jobs: int = 1) -> Prepared:
    """Resolve the suite once into a plan and validate everything (ranges, data files, memory,
    AMP with populations, recipe conflicts, sweeps) before any store, folder or run exists."""
    if jobs < 1:
        raise ConfigError(f"jobs={jobs} is not allowed; allowed: >= 1")
    choose_population(population, "mlp", device)  # a bad value fails before any work
    plan = suite.plan(device)
    check_populations(plan.entries, population, jobs if device == "cpu" else 1)
    return Prepared(suite, plan, suite.sweep_configs(plan, population), population, jobs)


def run_sweeps(prepared: Prepared, tracker, experiment: str, storage: str | None,
               progress: bool) -> Tuned:  # fmt: skip
    """Sweep each (dataset, method) with the suite's equal budget; the chosen parameters."""
    tuned = {}
    for c in tqdm(prepared.sweeps, desc=f"sweeps {prepared.suite.name}", unit="study",
                  disable=not progress or not prepared.sweeps, file=sys.stderr):  # fmt: skip
        workers = prepared.jobs if c.device == "cpu" else 1
        summary = run_sweep(c, storage or default_storage(), tracker=tracker,
                            experiment=experiment, workers=workers)  # fmt: skip
        tuned.setdefault((c.dataset, c.method), summary["best_params"])  # the first sampler's
    return tuned


def run_suite(suite: Suite | Prepared, tracker, experiment: str, device: str = "cpu",
              progress: bool = True, storage: str | None = None, jobs: int = 1,
              population: int | str = 1) -> dict:  # fmt: skip
    """Sweep (when the suite says so), then run every entry of the plan not yet done on the
    reporting seeds, on `jobs` single-threaded processes, in populations of up to `population`
    runs (an int or `auto`); returns counts (total, skipped, finished, diverged). The set of
    runs, and what each records, is the same whatever `jobs` and `population` are. A Suite is
    prepared here; `cmd_suite` prepares it before it opens any store and passes the result."""
    p = suite if isinstance(suite, Prepared) else prepare(suite, device, population, jobs)
    for (dataset, cell, name), why in p.plan.left_out.items():
        print(f"suite {p.suite.name}: {name} left out on {dataset} {cell} ({why.split(':')[0]})",
              file=sys.stderr)  # fmt: skip
    tracker.reconcile(experiment)  # runs left RUNNING by a killed earlier attempt
    tuned = run_sweeps(p, tracker, experiment, storage, progress)
    entries = p.plan.with_tuned(tuned).entries
    done = tracker.done_keys(experiment)
    busy = tracker.busy_keys(experiment) - done  # live runs of another invocation: theirs
    todo = [e for e in entries if (key := (config_hash(e.config), e.config.seed)) not in done
            and key not in busy]  # fmt: skip
    counts = {"total": len(entries), "skipped": len(entries) - len(todo), "finished": 0,
              "diverged": 0, "in_progress": len(busy)}  # fmt: skip
    # `skipped` also counts runs another live invocation took while this one ran
    if busy:
        print(f"suite {p.suite.name}: {len(busy)} runs are being trained by another live "
              "process; left to it (run the suite again once it ends to see them done)",
              file=sys.stderr)  # fmt: skip
    t0 = time.perf_counter()
    _train_all(p, todo, tracker, experiment, counts, progress)
    counts["wall_time_s"] = time.perf_counter() - t0
    return counts


def _train_all(p: Prepared, todo: list[Entry], tracker, experiment: str, counts: dict,
               progress: bool) -> None:  # fmt: skip
    """Train `todo` in populations, on workers when there are several; count the statuses."""
    bar = tqdm(
        total=counts["total"], initial=counts["skipped"], desc=f"suite {p.suite.name}",
        unit="run", disable=not progress, file=sys.stderr, position=0,
    )  # fmt: skip
    cpu = all(e.config.device == "cpu" for e in todo)
    chunks = check_populations(todo, p.population, p.jobs if cpu else 1)
    if p.jobs > 1 and len(chunks) > 1 and cpu:
        tracker.experiment_id(experiment)  # created here, not raced by the workers
        statuses = _parallel(chunks, tracker.uri, experiment, p.suite.name, p.jobs)
    else:
        statuses = (_one(chunk, tracker, experiment, p.suite.name, progress) for chunk in chunks)
    for chunk, chunk_statuses in zip(chunks, statuses, strict=True):
        last = chunk[-1]
        bar.set_postfix_str(f"{last.config.dataset} {last.cell.label} {last.label} "
                            f"seed {last.config.seed}")  # fmt: skip
        for status in chunk_statuses:
            counts[status] += 1
        bar.update(len(chunk))
    bar.close()


def _one(chunk: list[Entry], tracker, experiment: str, suite: str, progress: bool) -> list[str]:
    """The statuses of one population's runs (a chunk of plan entries). Runs that another
    invocation finished or is training since this one planned are left to it (`skipped`)."""
    taken = tracker.done_keys(experiment) | tracker.busy_keys(experiment)
    todo = [e for e in chunk if (config_hash(e.config), e.config.seed) not in taken]
    statuses = {id(e): "skipped" for e in chunk}
    if todo:
        results = run_tracked_population(
            [e.config for e in todo], tracker, experiment, suite=suite,
            labels=[e.label for e in todo], tags=[e.tags() for e in todo], progress=progress,
            leave_busy=True,
        )  # fmt: skip
        statuses |= {id(e): r.status for e, r in zip(todo, results, strict=True)}
    return [statuses[id(e)] for e in chunk]


def _parallel(chunks, uri: str, experiment: str, suite: str, jobs: int):
    """Statuses of each chunk's runs, in order, trained on `jobs` spawned processes with one
    torch thread each (on a 2-core machine two single-threaded runs beat one two-threaded run
    by far; see docs/performance.md). Each worker records its runs in the same store; it dies
    with the parent."""
    from bench.workers import worker_pool

    with worker_pool(jobs) as pool:
        yield from pool.imap(_pool_run, [(chunk, uri, experiment, suite) for chunk in chunks])


_TRACKERS: dict[str, Any] = {}


def _pool_run(args) -> list[str]:
    from bench.tracking import MlflowTracker, NullTracker

    chunk, uri, experiment, suite = args
    if uri not in _TRACKERS:
        _TRACKERS[uri] = NullTracker() if uri == "none" else MlflowTracker(uri)
    return _one(chunk, _TRACKERS[uri], experiment, suite, False)
