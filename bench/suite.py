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

Re-running a suite skips every (config hash, seed) already finished in MLflow and redoes only the
missing, failed or killed ones; interrupted work never loses a finished run nor duplicates one.
"""

from __future__ import annotations

import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.config import ModelSpec, RunConfig, TrainConfig
from bench.errors import ConfigError, NoOpMethod
from bench.methods import BASELINE, method_registry, search_space
from bench.record import config_hash, run_tracked_population
from bench.resources import fitting_population
from bench.run import population_key, resolve
from bench.sweep import SweepConfig, default_storage, run_sweep
from bench.workers import choose_population, worker_init


def all_methods() -> tuple[tuple[str, dict], ...]:
    """Every registered method (plugins included), the baseline first."""
    names = [BASELINE] + [n for n in method_registry.names() if n != BASELINE]
    return tuple((n, {}) for n in names)


ALL_METHODS = all_methods()
SUITE_KEYS = (
    "name",
    "datasets",
    "methods",
    "seeds",
    "train",
    "model",
    "sweep",
    "per_dataset",
    "lr_mults",
)
SWEEP_KEYS = ("trials", "tuning_seeds", "train", "pruner")
PER_DATASET_KEYS = ("train", "model", "sweep_train", "data_root")


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
    # "sweep_train": {...}, "data_root": "/path/to/files"}}
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The stability map: every method also runs at these multiples of its recipe's learning
    # rates (at its tuned threshold); 1 is always included, and is what the main tables show.
    lr_mults: tuple[float, ...] = (1.0,)

    def data_root(self, dataset: str) -> str:
        return str(self.per_dataset.get(dataset, {}).get("data_root", ""))

    def settings(self, dataset: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(train, model) options for runs on `dataset`."""
        extra = self.per_dataset.get(dataset, {})
        return self.train | extra.get("train", {}), self.model | extra.get("model", {})

    def entries(
        self, device: str = "cpu", tuned: dict | None = None
    ) -> list[tuple[RunConfig, str]]:
        """Every (resolved config, label) of the suite, validated; methods vary fastest so that
        a partial suite already covers every method. `tuned[(dataset, method)]` holds the
        parameters a sweep chose."""
        self._check_seeds()
        labels = _labels(self.methods)
        skip = self.no_ops(device)
        out = []
        mults = sorted({1.0, *map(float, self.lr_mults)})
        for dataset in self.datasets:
            for mult in mults:
                for seed in self.seeds:
                    for (name, params), label in zip(self.methods, labels, strict=True):
                        if (dataset, name) in skip:
                            continue
                        params = params | (tuned or {}).get((dataset, name), {})
                        train, model = self.settings(dataset)
                        train = train | ({"lr_mult": mult} if mult != 1.0 else {})
                        cfg = resolve(dataset, [(name, params)], train, model, seed, device,
                                      self.data_root(dataset))  # fmt: skip
                        out.append((cfg, label))
        return out

    def no_ops(self, device: str = "cpu") -> dict[tuple[str, str], str]:
        """{(dataset, method): why} for the methods that would change nothing on a data set's
        models (layer norm on a critic without a layer to normalise): left out of the suite."""
        found = {}
        for dataset in self.datasets:
            train, model = self.settings(dataset)
            for name, params in self.methods:
                try:
                    resolve(dataset, [(name, params)], train, model, self.seeds[0], device,
                            self.data_root(dataset))  # fmt: skip
                except NoOpMethod as e:
                    found[(dataset, name)] = str(e)
        return found

    def _check_seeds(self) -> None:
        if not self.sweep:
            return
        overlap = set(self.sweep.get("tuning_seeds", ())) & set(self.seeds)
        if overlap:
            raise ConfigError(
                f"suite {self.name!r}: seeds {sorted(overlap)} are both tuning and reporting "
                "seeds; tuning seeds must not be reporting seeds"
            )
        if any(params for _, params in self.methods):
            raise ConfigError(f"suite {self.name!r}: a sweeping suite takes methods without params")

    def sweep_configs(self, device: str, population: int | str = 1) -> list:
        """One SweepConfig per (dataset, method) that has something to search."""
        if not self.sweep:
            return []
        s, skip = self.sweep, self.no_ops(device)
        return [
            SweepConfig(
                dataset, name, int(s.get("trials", 20)), tuple(s.get("tuning_seeds", (1000,))),
                train=self.settings(dataset)[0] | dict(s.get("train", {}))
                | self.per_dataset.get(dataset, {}).get("sweep_train", {}),
                model=self.settings(dataset)[1], suite=self.name,
                pruner=s.get("pruner", "median"), device=device, data_root=self.data_root(dataset),
                population=population,
            )
            for dataset in self.datasets
            for name, _ in self.methods
            if search_space(method_registry.get(name)) and (dataset, name) not in skip
        ]  # fmt: skip


def _labels(methods) -> list[str]:
    """The method name, with its parameters when the same method appears more than once."""
    names = [n for n, _ in methods]
    return [
        n if names.count(n) == 1 else n + "(" + ",".join(f"{k}={v}" for k, v in p.items()) + ")"
        for n, p in methods
    ]


# The calibrated 2-D protocols (reports/calibration.md, `make calibrate`): the baseline's median
# hq_fraction reaches the 0.85 gate over 10 seeds, and on grid25 it still misses modes on 6 of
# them, so a stabilizer has something to fix.
RING8 = {"steps": 5000, "eval_every": 1000, "log_every": 100}
GRID25 = {"steps": 10000, "eval_every": 2000, "log_every": 100, "lr_g": 1e-3, "lr_d": 1e-3}
# Sweeps tune at the reporting length, 8 trials on 2 tuning seeds for every method.
SWEEP = {"trials": 8, "tuning_seeds": (100, 101), "pruner": "median"}
QUICK_METHODS = ((BASELINE, {}), ("value_clip", {}), ("norm_clip", {}), ("zclip", {}))
STANDARD_METHODS = (*QUICK_METHODS[:3], ("agc", {}), ("zclip", {}), ("spectral_norm", {}))

PRESETS = {
    # `make bench`: what fits about 30 minutes on 2 cores without giving up validity: grid25
    # (where the baseline fails on some seeds), the folk remedy (value clipping), norm clipping
    # and one adaptive clipper against the baseline, 10 reporting seeds, tuned fairly.
    "quick": Suite(
        "quick", ("grid25",), QUICK_METHODS, tuple(range(10)), sweep=SWEEP,
        per_dataset={"grid25": {"train": GRID25}},
    ),
    # The stability map on 2 cores in under an hour: ring8 (where the baseline converges on
    # every seed at the protocol's learning rate, so what is left to fix is stability at larger
    # ones), learning rates x1 and x10, the clippers with spectral norm as the reference, 10
    # seeds, tuned at x1 like `quick`. Every method on both mixtures is `full`, for a GPU.
    "standard": Suite(
        "standard", ("ring8",), STANDARD_METHODS, tuple(range(10)), sweep=SWEEP,
        per_dataset={"ring8": {"train": RING8}}, lr_mults=(1.0, 10.0),
    ),
    # For a GPU: 20 trials on 2 tuning seeds, 10 reporting seeds, the stability map, images too.
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
        lr_mults=(1.0, 3.0, 10.0, 30.0),
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
        raw = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"suite file {str(path)!r} cannot be read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"suite file {str(path)!r} is not valid TOML ({e})") from None
    return suite_from_dict(raw, path.stem, str(path))


def _keys(where: str, table: Any, allowed: tuple[str, ...]) -> dict:
    """`table` as a dict whose keys are all in `allowed`; one-line errors otherwise."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, not {table!r}")
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


def suite_from_dict(raw: dict, default_name: str, where: str = "suite") -> Suite:
    """A Suite from a parsed TOML table; every key checked at every level."""
    _keys(f"suite file {where!r}", raw, SUITE_KEYS)
    datasets = _list(f"{where}: datasets", raw.get("datasets", ["ring8"]), str)
    sweep = raw.get("sweep")
    if sweep is not None:
        sweep = dict(_keys(f"{where}: [sweep]", sweep, SWEEP_KEYS))
        if "tuning_seeds" in sweep:
            sweep["tuning_seeds"] = _list(f"{where}: [sweep] tuning_seeds",
                                          sweep["tuning_seeds"], int)  # fmt: skip
        _keys(f"{where}: [sweep.train]", sweep.get("train", {}), _train_fields())
    per_dataset = _keys(f"{where}: [per_dataset]", raw.get("per_dataset", {}), datasets)
    for name, extra in per_dataset.items():
        _keys(f"{where}: [per_dataset.{name}]", extra, PER_DATASET_KEYS)
    return Suite(
        name=str(raw.get("name", default_name)),
        datasets=datasets,
        methods=tuple(_method_entry(m, where) for m in raw.get("methods", [[BASELINE, {}]])),
        seeds=_list(f"{where}: seeds", raw.get("seeds", [0]), int),
        train=dict(_keys(f"{where}: [train]", raw.get("train", {}), _train_fields())),
        model=dict(_keys(f"{where}: [model]", raw.get("model", {}), _model_fields())),
        sweep=sweep,
        per_dataset=dict(per_dataset),
        lr_mults=_list(f"{where}: lr_mults", raw.get("lr_mults", [1.0]), float),
    )


def _train_fields() -> tuple[str, ...]:
    return tuple(TrainConfig.__dataclass_fields__)


def _model_fields() -> tuple[str, ...]:
    return tuple(ModelSpec.__dataclass_fields__)


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


def run_sweeps(suite: Suite, tracker, experiment: str, device: str, storage: str | None,
               progress: bool, jobs: int = 1, population: int | str = 1) -> Tuned:  # fmt: skip
    """Sweep each (dataset, method) with the suite's equal budget; the chosen parameters."""
    configs = suite.sweep_configs(device, population)
    for c in configs:
        c.validate()
    tuned = {}
    for c in tqdm(configs, desc=f"sweeps {suite.name}", unit="study", disable=not progress,
                  file=sys.stderr):  # fmt: skip
        summary = run_sweep(
            c,
            storage or default_storage(),
            tracker=tracker,
            experiment=experiment,
            workers=jobs if device == "cpu" else 1,
        )
        tuned[(c.dataset, c.method)] = summary["best_params"]
    return tuned


def populations(todo: list, population: int | str, jobs: int) -> list[list]:
    """`todo`'s (config, label) entries grouped into populations: runs that differ only in
    seed and method float values (bench.run.population_key) train together, at most K at a
    time (`choose_population`), in chunks small enough to keep `jobs` workers busy."""
    groups: dict[tuple, list] = {}
    for entry in todo:
        groups.setdefault(population_key(entry[0]), []).append(entry)
    share = -(-len(todo) // max(1, jobs))  # ceil: every worker gets some
    chunks = []
    for group in groups.values():
        cfg = group[0][0]
        k = min(choose_population(population, cfg.model.kind, cfg.device), share, len(group))
        k = fitting_population(cfg, max(1, k), population)
        chunks += [group[i : i + k] for i in range(0, len(group), k)]
    return chunks


def run_suite(suite: Suite, tracker, experiment: str, device: str, progress: bool = True,
              storage: str | None = None, jobs: int = 1,
              population: int | str = 1) -> dict:  # fmt: skip
    """Sweep (when the suite says so), then run every entry not yet done on the reporting seeds,
    on `jobs` single-threaded processes, in populations of up to `population` runs (an int or
    `auto`); returns counts (total, skipped, finished, diverged). The set of runs, and what
    each records, is the same whatever `jobs` and `population` are."""
    if jobs < 1:
        raise ConfigError(f"jobs={jobs} is not allowed; allowed: >= 1")
    choose_population(population, "mlp", device)  # a bad value fails before any work
    # Validates every entry, and the population sizes against memory, before anything runs.
    populations(suite.entries(device), population, jobs)
    for (dataset, name), why in suite.no_ops(device).items():
        print(f"suite {suite.name}: {name} left out on {dataset} ({why.split(':')[0]})",
              file=sys.stderr)  # fmt: skip
    tracker.reconcile(experiment)  # runs left RUNNING by a killed earlier attempt
    tuned = run_sweeps(suite, tracker, experiment, device, storage, progress, jobs, population)
    entries = suite.entries(device, tuned)
    done = tracker.done_keys(experiment)
    todo = [(c, lbl) for c, lbl in entries if (config_hash(c), c.seed) not in done]
    counts = {"total": len(entries), "skipped": len(entries) - len(todo), "finished": 0,
              "diverged": 0}  # fmt: skip
    bar = tqdm(
        total=len(entries), initial=counts["skipped"], desc=f"suite {suite.name}", unit="run",
        disable=not progress, file=sys.stderr, position=0,
    )  # fmt: skip
    t0 = time.perf_counter()
    chunks = populations(todo, population, jobs if device == "cpu" else 1)
    if jobs > 1 and len(chunks) > 1 and device == "cpu":
        tracker.experiment_id(experiment)  # created here, not raced by the workers
        statuses = _parallel(chunks, tracker.uri, experiment, suite.name, jobs)
    else:
        statuses = (_one(chunk, tracker, experiment, suite.name, progress) for chunk in chunks)
    for chunk, chunk_statuses in zip(chunks, statuses, strict=True):
        (cfg, label) = chunk[-1]
        bar.set_postfix_str(f"{cfg.dataset} {label} seed {cfg.seed}")
        for status in chunk_statuses:
            counts[status] += 1
        bar.update(len(chunk))
    bar.close()
    counts["wall_time_s"] = time.perf_counter() - t0
    return counts


def _one(chunk, tracker, experiment: str, suite: str, progress: bool) -> list[str]:
    """The statuses of one population's runs (a chunk of (config, label) entries)."""
    cfgs, labels = [c for c, _ in chunk], [lbl for _, lbl in chunk]
    results = run_tracked_population(cfgs, tracker, experiment, suite=suite, labels=labels,
                                     progress=progress)  # fmt: skip
    return [r.status for r in results]


def _parallel(chunks, uri: str, experiment: str, suite: str, jobs: int):
    """Statuses of each chunk's runs, in order, trained on `jobs` spawned processes with one
    torch thread each (on a 2-core machine two single-threaded runs beat one two-threaded run
    by far; see the README). Each worker records its runs in the same store; it dies with the
    parent."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(jobs, initializer=worker_init) as pool:
        args = [(chunk, uri, experiment, suite) for chunk in chunks]
        yield from pool.imap(_pool_run, args, chunksize=1)


_TRACKERS: dict[str, Any] = {}


def _pool_run(args) -> list[str]:
    from bench.tracking import MlflowTracker, NullTracker

    chunk, uri, experiment, suite = args
    if uri not in _TRACKERS:
        _TRACKERS[uri] = NullTracker() if uri == "none" else MlflowTracker(uri)
    return _one(chunk, _TRACKERS[uri], experiment, suite, False)
