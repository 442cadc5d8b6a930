"""Command line: `python -m bench list | check | run | suite | sweep | report | fetch | upload`.

Names become objects only here (and in the suite and sweep runners). Bad input exits with code 2
and one line on stderr naming the bad value and what is allowed, before anything is trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.errors import ConfigError, check_name, mask_secrets
from bench.methods import BASELINE
from bench.params import allowed_text, field_types
from bench.workers import parse_population


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"error: {message} (see --help)\n")


def config_flags(p: argparse.ArgumentParser, cls: type, title: str) -> None:
    """One flag per field of a config dataclass, from its declaration: type, help, default and
    allowed values. Values stay text here; `resolve` parses and validates them (one-line
    errors), and only flags given override the data set's defaults and the method's recipe."""
    g = p.add_argument_group(
        title,
        "defaults are the shared recipe's; a data set's defaults "
        "and a method's recipe may change them (`list` shows both)",
    )
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        allowed = allowed_text(f)
        text = f"{f.metadata.get('help') or f.name.replace('_', ' ')} (default: {default}"
        text += f"; allowed: {allowed})" if allowed else ")"
        flag = "--" + f.name.replace("_", "-")
        if field_types(cls)[f.name] is bool:
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=text)  # fmt: skip
        else:
            g.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar=f.name.upper(),
                           help=text)  # fmt: skip


def model_values(args: argparse.Namespace) -> dict[str, Any]:
    """ModelSpec flags the user gave, with `--model` as the kind."""
    from bench.config import ModelSpec

    kind = {"kind": args.model} if getattr(args, "model", None) else {}
    return config_values(args, ModelSpec) | kind


def config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags of `cls`'s fields that the user gave."""
    names = [f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


SUITE_EPILOG = """a suite file (TOML) may declare axes: any training or model field mapped to
a list of values; every method runs in every cell of their cross product (the first value of
each axis is the reference cell: the main tables, and where sweeps tune):

  datasets = ["ring8"]
  methods = ["none", "value_clip", "norm_clip"]
  seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
  [axes]
  beta1 = [0.5, 0.9]
  optimizer = ["adam", "sgd"]
  depth_d = [3, 6]

`cells = [{beta1 = 0.5}, {depth_d = 6}]` lists cells instead of the cross product;
[per_dataset.NAME.axes] gives a data set its own axes; on_recipe_conflict = "axis" or
"recipe" says which wins where an axis sets a field a method's recipe sets (loss for
weight_clip). Runs are tagged axis.FIELD and cell in MLflow."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help="methods with their parameters and search ranges, datasets "
                   "with their metrics and defaults")  # fmt: skip
    c = sub.add_parser("check", help="run the method contract battery on one method")
    c.add_argument("method", help="a registered method name (see `list`)")
    _run_parser(sub)
    _suite_parser(sub)
    _sweep_parser(sub)
    f = sub.add_parser("fetch", help="download an image data set through torchvision (internet)")
    f.add_argument("dataset", help="mnist, fashion-mnist or cifar10 (or their stacked-*)")
    f.add_argument("--data-root", default="", help="where to put the files (default data/NAME)")
    rep = sub.add_parser("report", help="markdown report of an experiment, from MLflow alone")
    rep.add_argument("--experiment", required=True, help="MLflow experiment name")
    rep.add_argument("--out", help="default reports/EXPERIMENT.md")
    rep.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./runs/mlflow.db")
    up = sub.add_parser("upload", help="send runs kept in runs/offline/ (the tracking server "
                        "was unreachable) to the store")  # fmt: skip
    up.add_argument("--tracking-uri", help="default: the store each run was meant for")
    return p


def _config_flags(p) -> None:
    from bench.config import ModelSpec, TrainConfig

    for cls, title in ((TrainConfig, "training"), (ModelSpec, "model")):
        config_flags(p, cls, title)


def _run_parser(sub) -> None:
    r = sub.add_parser("run", help="train and evaluate one run; prints one JSON line")
    _run_args(r)
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method parameter; METHOD.KEY=VALUE when several methods are given",
    )
    r.add_argument("--targets", help="roles the methods act on, e.g. generator,discriminator")
    r.add_argument("--seed", type=int, default=0, help="reporting seed (data, noise, init)")
    r.add_argument("--lr", help="both learning rates (lr_g and lr_d)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    _tracking_args(r, default_experiment="runs")
    r.add_argument("--no-track", action="store_true", help="do not record the run in MLflow")
    _config_flags(r)


def _suite_parser(sub) -> None:
    s = sub.add_parser(
        "suite",
        help="run a suite resumably, then write its report",
        epilog=SUITE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--suite", default="quick", help="quick, standard, full, micro, or a .toml")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--report", help="report path (default reports/EXPERIMENT.md)")
    s.add_argument("--no-report", action="store_true", help="skip the report")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="runs trained at once on CPU, one process and one torch thread each",
    )
    s.add_argument("--population", default="auto", help="runs trained as one batched "
                   "population per process: an integer, or auto (by device and model)")  # fmt: skip
    _tracking_args(s, default_experiment=None)
    s.add_argument("--storage", help="Optuna storage for suites that sweep (default "
                   "runs/optuna.db)")  # fmt: skip


def _sweep_parser(sub) -> None:
    sw = sub.add_parser("sweep", help="Optuna search of a method's declared range")
    _run_args(sw)
    sw.add_argument("--trials", type=int, default=20, help="trials that complete, prune or fail")
    sw.add_argument("--tuning-seeds", default="1000", help="comma-separated; never reporting seeds")
    sw.add_argument("--storage", help="sqlite:///PATH (default runs/optuna.db) or postgresql://...")
    sw.add_argument("--workers", type=int, default=1, help="processes on this machine")
    sw.add_argument("--population", default="auto", help="trials trained at once as one "
                    "batched population: an integer, or auto (1 on CPU; on a GPU by model, at "
                    "most a quarter of the trials)")  # fmt: skip
    sw.add_argument("--suite", default="adhoc", help="names the study: SUITE.DATASET.METHOD")
    sw.add_argument("--pruner", default="median", help="median, halving or none")
    sw.add_argument("--multi-objective", action="store_true", help="quality vs coverage (Pareto)")
    sw.add_argument("--heartbeat", type=int, default=10, help="seconds; a dead worker's trial "
                    "fails after 3 missed beats")  # fmt: skip
    _tracking_args(sw, default_experiment="sweeps")
    sw.add_argument("--no-track", action="store_true", help="do not record trials in MLflow")
    _config_flags(sw)


def _run_args(p: argparse.ArgumentParser) -> None:
    """What `run` and `sweep` share: the data set, the method, the device."""
    p.add_argument("--dataset", required=True, help="a registered data set (see `list`)")
    p.add_argument("--method", action="append", default=[],
                   help="a registered method; repeatable for `run` (default none)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-root", default="", help="folder of an image data set's files")
    p.add_argument("--model", help="network kind: mlp (2-D default), pacgan (2-D, PacGAN's "
                   "architecture and recipe, for long runs), dcgan (images' default)")  # fmt: skip


def _tracking_args(p: argparse.ArgumentParser, default_experiment: str | None) -> None:
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./runs/mlflow.db")
    p.add_argument("--experiment", default=default_experiment,
                   help="MLflow experiment (suite: the suite's name)")  # fmt: skip


def parse_sets(methods: list[str], sets: list[str], targets: str | None):
    """[(method, {param: text})] from --method and --set flags."""
    methods = methods or [BASELINE]
    dupes = sorted({m for m in methods if methods.count(m) > 1})
    if dupes:
        raise ConfigError(f"method {dupes[0]!r} is given twice; give each method once")
    params: dict[str, dict[str, str]] = {m: {} for m in methods}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is malformed; use KEY=VALUE")
        owner, dot, name = key.rpartition(".")
        if not dot:
            if len(methods) > 1:
                raise ConfigError(f"--set {item!r} is ambiguous; use METHOD.{key}=VALUE")
            owner = methods[0]
        if owner not in params:
            raise ConfigError(f"--set {item!r} names method {owner!r}, not one of: {methods}")
        params[owner][name] = value
    if targets is not None:
        for p in params.values():
            p.setdefault("targets", targets)
    return list(params.items())


def cmd_list() -> None:
    from bench.config import TrainConfig
    from bench.datasets import dataset_registry
    from bench.methods import method_registry
    from bench.methods.base import describe

    rows = []
    for name in method_registry.names():
        cls = method_registry.get(name)
        for i, (pname, default, allowed, search, help_) in enumerate(describe(cls)):
            default = ",".join(default) if isinstance(default, tuple) else default
            first = i == 0
            rows.append([name if first else "", cls.family if first else "", pname, default,
                         allowed, search, help_])  # fmt: skip
    print(tabulate(rows, ["method", "family", "parameter", "default", "allowed", "searched",
                          "meaning"]))  # fmt: skip
    print()
    drows = []
    for n in dataset_registry.names():
        cls = dataset_registry.get(n)
        train = cls.settle(TrainConfig(**cls.train_defaults()))
        metrics = ", ".join(m.name + (" (primary)" if m.primary else "")
                            for m in cls.declare_metrics(train))  # fmt: skip
        defaults = cls.train_defaults() | {
            k: v for k, v in cls.model_defaults().items() if k not in ("kind", "data_dim")
        }
        model = cls.model_defaults().get("kind", "mlp")
        drows.append([n, cls.description, model, metrics,
                      ", ".join(f"{k}={v}" for k, v in defaults.items())])  # fmt: skip
    print(tabulate(drows, ["dataset", "description", "model", "metrics", "defaults"],
                   maxcolwidths=[None, 40, None, 40, 40]))  # fmt: skip


def cmd_check(args: argparse.Namespace) -> int:
    """The contract battery on one method, a line per check; exit 1 when any fails."""
    from bench.contract import run_checks

    results = run_checks(args.method)
    for check, ok, reason in results:
        print(f"{'PASS' if ok else 'FAIL'}  {check}" + (f": {reason}" if reason else ""))
    failed = sum(not ok for _, ok, _ in results)
    print(f"{args.method}: {len(results) - failed} of {len(results)} checks passed")
    return 1 if failed else 0


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"seeds {text!r} are not comma-separated integers") from None
    return tuple(_seed(s, "tuning seeds") for s in seeds)


def _seed(value: int, owner: str) -> int:
    """A seed checked against RunConfig's declaration of it (what torch.manual_seed takes)."""
    from bench.config import RunConfig
    from bench.params import check_field

    return check_field(RunConfig, "seed", value, owner)


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    from bench.config import TrainConfig
    from bench.run import resolve_device
    from bench.sweep import SweepConfig, default_storage, make_storage, run_sweep
    from bench.tracking import MlflowTracker, NullTracker, check_reachable, default_tracking_uri

    train, model = config_values(args, TrainConfig), model_values(args)
    if len(args.method) != 1:
        raise ConfigError(f"sweep takes one --method, not {len(args.method)}")
    cfg = SweepConfig(
        args.dataset, args.method[0], args.trials, _seeds(args.tuning_seeds), train, model,
        suite=args.suite, multi_objective=args.multi_objective, pruner=args.pruner,
        device=resolve_device(args.device), data_root=args.data_root,
        population=parse_population(args.population),
    )  # fmt: skip
    cfg.validate()
    if args.workers < 1:
        raise ConfigError(f"workers={args.workers} is not allowed; allowed: >= 1")
    if args.heartbeat < 1:
        raise ConfigError(f"heartbeat={args.heartbeat} is not allowed; allowed: >= 1")
    if not args.no_track:
        check_reachable(args.tracking_uri or default_tracking_uri())  # before a store is made
    storage = args.storage or default_storage()
    make_storage(storage, args.heartbeat)  # fails fast on a bad URL
    tracker = NullTracker() if args.no_track else MlflowTracker(args.tracking_uri)
    return run_sweep(cfg, storage, workers=args.workers, tracker=tracker,
                     experiment=args.experiment, heartbeat=args.heartbeat)  # fmt: skip


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.config import TrainConfig
    from bench.run import execute, resolve
    from bench.workers import thread_params

    train, model = config_values(args, TrainConfig), model_values(args)
    if args.lr is not None:
        train = {"lr_g": args.lr, "lr_d": args.lr} | train
    methods = parse_sets(args.method, args.set, args.targets)
    seed = _seed(args.seed, "run")
    cfg = resolve(args.dataset, methods, train, model, seed, args.device, args.data_root)
    if args.no_track:
        result = execute(cfg, progress=not args.no_progress)
    else:
        from bench.record import run_tracked
        from bench.tracking import MlflowTracker

        tracker = MlflowTracker(args.tracking_uri)
        result = run_tracked(cfg, tracker, args.experiment, progress=not args.no_progress)
    return {
        "status": result.status,
        "steps": result.steps,
        "diverged_step": result.diverged_step,
        "wall_time_s": round(result.wall_time_s, 3),
        "threads": thread_params()["host.threads"],
        "metrics": {k.removeprefix("eval/"): v for k, v in result.metrics.items()},
        "config": cfg.to_dict(),
    }


def report_path(out: str | None, experiment: str) -> Path:
    """The report's path, checked writable (a file, not a directory) before any work starts."""
    from bench.system import check_output_file

    path = Path(out) if out else Path("reports") / f"{experiment}.md"
    if path.suffix != ".md" and not path.is_dir():
        raise ConfigError(f"report path {str(path)!r} must end in .md")
    return check_output_file(path, "report path")


def cmd_suite(args: argparse.Namespace) -> dict[str, Any]:
    from bench.offline import journals
    from bench.run import resolve_device
    from bench.suite import load_suite, prepare, run_suite
    from bench.tracking import MlflowTracker

    suite = load_suite(args.suite)
    experiment = check_name("experiment", args.experiment or suite.name)
    if args.jobs < 1:
        raise ConfigError(f"jobs={args.jobs} is not allowed; allowed: >= 1")
    device = resolve_device(args.device)
    population = parse_population(args.population)
    prepared = prepare(suite, device, population, args.jobs)  # the plan, validated whole
    out = None if args.no_report else report_path(args.report, experiment)
    storage = None
    if suite.sweep:
        from bench.sweep import default_storage, make_storage
        from bench.tracking import check_reachable, default_tracking_uri

        check_reachable(args.tracking_uri or default_tracking_uri())  # before a store is made
        storage = args.storage or default_storage()
        make_storage(storage)  # fails fast on a bad URL
    tracker = MlflowTracker(args.tracking_uri)
    counts = run_suite(prepared, tracker, experiment, device, progress=not args.no_progress,
                       storage=storage)  # fmt: skip
    summary = {"suite": suite.name, "experiment": experiment} | counts
    if not tracker.offline:
        summary["runs_table"] = tracker.runs_table_url(experiment)
        print(f"runs table: {summary['runs_table']} (`make ui` serves a local store)",
              file=sys.stderr)  # fmt: skip
    if tracker.offline:
        print(
            f"report skipped: the tracking store is unreachable; after `python -m bench upload`"
            f", run `python -m bench report --experiment {experiment}`",
            file=sys.stderr,
        )
        summary["offline_runs"] = len(journals(experiment))
    elif out is not None:
        from bench.report import build_report

        summary["report"] = str(build_report(tracker, experiment, out))
    return summary


def cmd_fetch(args: argparse.Namespace) -> dict[str, Any]:
    from bench.datasets import dataset_registry
    from bench.datasets.files import FileData

    cls = dataset_registry.get(args.dataset)
    cls = getattr(cls, "base_cls", cls)  # stacked-X: fetch X
    if not issubclass(cls, FileData):
        fetchable = [n for n in dataset_registry.names()
                     if issubclass(dataset_registry.get(n), FileData)]  # fmt: skip
        raise ConfigError(
            f"dataset {args.dataset!r} has nothing to download; fetchable: {', '.join(fetchable)}"
        )
    root = cls.fetch(Path(args.data_root) if args.data_root else None)
    return {"dataset": cls.name, "data_root": str(root)}


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from bench.report import build_report
    from bench.tracking import MlflowTracker, default_tracking_uri, sqlite_path

    out = report_path(args.out, args.experiment)
    uri = args.tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not sqlite_path(uri).is_file():
        raise ConfigError(f"experiment {args.experiment!r} has no runs: there is no store at "
                          f"{str(sqlite_path(uri))!r}")  # fmt: skip
    tracker = MlflowTracker(uri)
    return {"report": str(build_report(tracker, args.experiment, out))}


def cmd_upload(args: argparse.Namespace) -> dict[str, Any]:
    """Send the runs kept offline (runs/offline/) to their store, or to --tracking-uri. Every
    journal is checked, and every store reached, before anything is written."""
    from bench.offline import journals, read, upload
    from bench.tracking import MlflowTracker

    checked = [(folder, read(folder)) for folder in journals()]
    uris = [args.tracking_uri or journal[0]["uri"] for _, journal in checked]
    trackers = {uri: MlflowTracker(uri) for uri in dict.fromkeys(uris)}
    counts = {"uploaded": 0, "skipped": 0}
    for (folder, journal), uri in zip(checked, uris, strict=True):
        outcome = upload(trackers[uri], folder, journal)
        counts["uploaded" if outcome == "uploaded" else "skipped"] += 1
        print(f"{folder.name}: {outcome}", file=sys.stderr)
    return counts


def _finite(obj: Any) -> Any:
    """NaN and inf become null so the line is valid JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _interrupt(signum, frame):  # SIGTERM ends work like Ctrl-C: the current run is marked KILLED
    from bench.workers import deferred

    if not deferred(signum, frame):  # never inside a store's call: it would keep its lock
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not if ignored
            signal.signal(signal.SIGINT, _interrupt)
    try:
        if getattr(args, "experiment", None) is not None:
            check_name("experiment", args.experiment)
        if args.command == "list":
            cmd_list()
        elif args.command == "check":
            return cmd_check(args)
        else:
            command = {"run": cmd_run, "suite": cmd_suite, "sweep": cmd_sweep,
                       "report": cmd_report, "fetch": cmd_fetch,
                       "upload": cmd_upload}[args.command]  # fmt: skip
            print(json.dumps(_finite(command(args))), flush=True)
    except ConfigError as e:
        print(f"error: {mask_secrets(str(e))}", file=sys.stderr)
        return 2
    except Exception as e:
        if type(e).__name__ != "MlflowException":  # a bug: keep its traceback
            raise
        first = mask_secrets((str(e).strip().splitlines() or [type(e).__name__])[0][:300])
        print(f"error: the tracking store failed ({first}); finished runs are kept, run the "
              "same command again to resume", file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
