"""Command line: `python -m bench list | run | suite | sweep | report | fetch` (also `gan-bench`).

Names become objects only here (and in the suite and sweep runners). Bad input exits with code 2
and one line on stderr naming the bad value and what is allowed, before anything is trained.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.errors import ConfigError

# CLI flag -> TrainConfig field (only flags the user gives override the method's recipe)
TRAIN_FLAGS = {
    "steps": int,
    "batch_size": int,
    "n_critic": int,
    "loss": str,
    "optimizer": str,
    "lr_g": float,
    "lr_d": float,
    "beta1": float,
    "beta2": float,
    "eval_every": int,
    "eval_samples": int,
    "log_every": int,
}
MODEL_FLAGS = {"hidden": int, "z_dim": int, "depth_g": int, "depth_d": int, "d_capacity": float,
               "image_size": int}  # fmt: skip
EVAL_FLAGS = {"extractor": str, "inception_weights": str}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help="methods with their parameters, and datasets")
    r = sub.add_parser("run", help="train and evaluate one run; prints one JSON line")
    r.add_argument("--dataset", required=True)
    r.add_argument("--method", action="append", default=[], help="repeatable; default none")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method parameter; METHOD.KEY=VALUE when several methods are given",
    )
    r.add_argument("--targets", help="roles the methods act on, e.g. generator,discriminator")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    for name, tp in {**TRAIN_FLAGS, **MODEL_FLAGS, **EVAL_FLAGS}.items():
        r.add_argument("--" + name.replace("_", "-"), type=tp, default=None)
    r.add_argument("--data-root", default="", help="folder of an image data set's files")
    r.add_argument("--lr", type=float, help="both learning rates")
    r.add_argument("--amp", action="store_true", help="mixed precision")
    r.add_argument("--no-stats", action="store_true", help="skip gradient statistics")
    r.add_argument("--no-progress", action="store_true")
    _tracking_args(r, default_experiment="runs")
    r.add_argument("--no-track", action="store_true", help="do not record the run in MLflow")
    s = sub.add_parser("suite", help="run a suite resumably, then write its report")
    s.add_argument("--suite", default="quick", help="quick, full, micro, or a .toml file")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--report", help="report path (default reports/EXPERIMENT.md)")
    s.add_argument("--no-report", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    _tracking_args(s, default_experiment=None)
    s.add_argument(
        "--storage", help="Optuna storage for suites that sweep (default runs/optuna.db)"
    )
    sw = sub.add_parser("sweep", help="Optuna search of a method's clip range")
    sw.add_argument("--dataset", required=True)
    sw.add_argument("--method", required=True)
    sw.add_argument("--trials", type=int, default=20, help="trials that complete, prune or fail")
    sw.add_argument("--tuning-seeds", default="1000", help="comma-separated; never reporting seeds")
    sw.add_argument("--storage", help="sqlite:///PATH (default runs/optuna.db) or postgresql://...")
    sw.add_argument("--workers", type=int, default=1, help="processes on this machine")
    sw.add_argument("--suite", default="adhoc", help="names the study: SUITE.DATASET.METHOD")
    sw.add_argument("--pruner", default="median", help="median, halving or none")
    sw.add_argument("--multi-objective", action="store_true", help="quality vs coverage (Pareto)")
    sw.add_argument("--heartbeat", type=int, default=10, help="seconds; a dead worker's trial "
                    "fails after 3 missed beats")  # fmt: skip
    sw.add_argument("--device", default="auto")
    sw.add_argument("--data-root", default="", help="folder of an image data set's files")
    for name, tp in {**TRAIN_FLAGS, **MODEL_FLAGS, **EVAL_FLAGS}.items():
        sw.add_argument("--" + name.replace("_", "-"), type=tp, default=None)
    _tracking_args(sw, default_experiment="sweeps")
    sw.add_argument("--no-track", action="store_true")
    f = sub.add_parser("fetch", help="download an image data set through torchvision (internet)")
    f.add_argument("dataset", help="mnist, fashion-mnist or cifar10 (or their stacked-*)")
    f.add_argument("--data-root", default="", help="where to put the files (default data/NAME)")
    rep = sub.add_parser("report", help="markdown report of an experiment, from MLflow alone")
    rep.add_argument("--experiment", required=True)
    rep.add_argument("--out", help="default reports/EXPERIMENT.md")
    rep.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./runs/mlflow.db")
    return p


def _tracking_args(p: argparse.ArgumentParser, default_experiment: str | None) -> None:
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./runs/mlflow.db")
    p.add_argument("--experiment", default=default_experiment,
                   help="MLflow experiment (suite: the suite's name)")  # fmt: skip


def parse_sets(methods: list[str], sets: list[str], targets: str | None):
    """[(method, {param: text})] from --method and --set flags."""
    methods = methods or ["none"]
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
    from bench.datasets import dataset_registry
    from bench.methods import method_registry
    from bench.methods.base import describe

    rows = []
    for name in method_registry.names():
        cls = method_registry.get(name)
        for i, (pname, default, allowed, _help) in enumerate(describe(cls)):
            default = ",".join(default) if isinstance(default, tuple) else default
            rows.append(
                [name if i == 0 else "", cls.family if i == 0 else "", pname, default, allowed]
            )
    print(tabulate(rows, ["method", "family", "parameter", "default", "allowed"]))
    print()
    drows = [[n, dataset_registry.get(n).description] for n in dataset_registry.names()]
    print(tabulate(drows, ["dataset", "description"]))


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"seeds {text!r} are not comma-separated integers") from None


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    from bench.run import resolve_device
    from bench.sweep import SweepConfig, default_storage, make_storage, run_sweep
    from bench.tracking import MlflowTracker, NullTracker

    train = {k: getattr(args, k) for k in {**TRAIN_FLAGS, **EVAL_FLAGS}
             if getattr(args, k) is not None}  # fmt: skip
    model = {k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None}
    cfg = SweepConfig(
        args.dataset, args.method, args.trials, _seeds(args.tuning_seeds), train, model,
        suite=args.suite, multi_objective=args.multi_objective, pruner=args.pruner,
        device=resolve_device(args.device), data_root=args.data_root,
    )  # fmt: skip
    cfg.validate()
    if args.workers < 1:
        raise ConfigError(f"workers={args.workers} is not allowed; allowed: >= 1")
    if args.heartbeat < 1:
        raise ConfigError(f"heartbeat={args.heartbeat} is not allowed; allowed: >= 1")
    storage = args.storage or default_storage()
    make_storage(storage, args.heartbeat)  # fails fast on a bad URL
    tracker = NullTracker() if args.no_track else MlflowTracker(args.tracking_uri)
    return run_sweep(cfg, storage, workers=args.workers, tracker=tracker,
                     experiment=args.experiment, heartbeat=args.heartbeat)  # fmt: skip


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.run import execute, resolve

    train = {k: getattr(args, k) for k in {**TRAIN_FLAGS, **EVAL_FLAGS}
             if getattr(args, k) is not None}  # fmt: skip
    if args.lr is not None:
        train = {"lr_g": args.lr, "lr_d": args.lr} | train
    if args.amp:
        train["amp"] = True
    if args.no_stats:
        train["stats"] = False
    model = {k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None}
    methods = parse_sets(args.method, args.set, args.targets)
    cfg = resolve(args.dataset, methods, train, model, args.seed, args.device, args.data_root)
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
        "metrics": {k.removeprefix("eval/"): v for k, v in result.metrics.items()},
        "config": cfg.to_dict(),
    }


def report_path(out: str | None, experiment: str) -> Path:
    """The report's path, checked writable before any work starts."""
    from bench.tracking import writable_file_path

    path = Path(out) if out else Path("reports") / f"{experiment}.md"
    if path.suffix != ".md":
        raise ConfigError(f"report path {str(path)!r} must end in .md")
    if not writable_file_path(path):
        raise ConfigError(f"report path {str(path)!r} is not writable")
    return path


def cmd_suite(args: argparse.Namespace) -> dict[str, Any]:
    from bench.run import resolve_device
    from bench.suite import load_suite, run_suite
    from bench.tracking import MlflowTracker

    suite = load_suite(args.suite)
    experiment = args.experiment or suite.name
    device = resolve_device(args.device)
    suite.entries(device)  # validate every run of the suite first
    out = None if args.no_report else report_path(args.report, experiment)
    storage = None
    if suite.sweep:
        from bench.sweep import default_storage, make_storage

        storage = args.storage or default_storage()
        make_storage(storage)  # fails fast on a bad URL
    tracker = MlflowTracker(args.tracking_uri)
    counts = run_suite(suite, tracker, experiment, device, progress=not args.no_progress,
                       storage=storage)  # fmt: skip
    summary = {"suite": suite.name, "experiment": experiment} | counts
    if out is not None:
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
    from bench.tracking import MlflowTracker

    out = report_path(args.out, args.experiment)
    tracker = MlflowTracker(args.tracking_uri)
    return {"report": str(build_report(tracker, args.experiment, out))}


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
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "list":
            cmd_list()
        else:
            command = {"run": cmd_run, "suite": cmd_suite, "sweep": cmd_sweep,
                       "report": cmd_report, "fetch": cmd_fetch}[args.command]  # fmt: skip
            print(json.dumps(_finite(command(args))), flush=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
