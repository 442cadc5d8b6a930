"""Calibrate an image protocol's length (`make calibrate-images`): when has the baseline's KID
stopped falling?

`none` trains on seeds 0..N-1 (N = 3 by default) with the model and training options the `full`
suite gives the data set, one single-threaded process per core, untracked, evaluating every
`--every` steps. Printed and written to reports/calibration-<data>.md: per evaluation step, the
median over seeds of the primary metric (KID) and of the other metrics, and the first step after
which no later evaluation improves the median KID by more than `--tolerance` (10 %) of its value
at that step (a share of the noise-to-data distance would be too lenient: noise images score far
away). That step is the shortest valid length; a horizon too short to show it is said so.
Reference rows (training images, noise images, one class) are scored by the same code.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from pathlib import Path

from tabulate import tabulate


def protocol(dataset: str) -> tuple[dict, dict]:
    """(train, model) options of the `full` suite for `dataset`."""
    from bench.suite import PRESETS

    return PRESETS["full"].settings(dataset)


def one_run(job: tuple) -> dict:
    import torch

    from bench.run import execute, resolve

    torch.set_num_threads(1)  # one thread per process, one process per core
    dataset, steps, every, seed = job
    train, model = protocol(dataset)
    train = train | {"steps": steps, "eval_every": every, "log_every": every, "stats": False}
    cfg = resolve(dataset, [("none", {})], train, model, seed, "cpu")
    t0 = time.perf_counter()
    result = execute(cfg)
    evals = {step: {k.removeprefix("eval/"): v for k, v in m.items() if k.startswith("eval/")}
             for step, m in result.history}  # fmt: skip
    return {"seed": seed, "status": result.status, "seconds": time.perf_counter() - t0,
            "evals": {s: m for s, m in evals.items() if m}}  # fmt: skip


def references(dataset: str, n: int) -> dict[str, dict[str, float]]:
    from bench.datasets import create_dataset
    from bench.metrics.base import evaluate

    data = create_dataset(dataset)
    return {label: evaluate(data, data.metrics, data.replay(x), n)
            for label, x in data.references(n, seed=0).items()}  # fmt: skip


def plateau(steps: list[int], values: list[float], tolerance: float) -> int | None:
    """The first step after which no later value is lower by more than tolerance * its own
    value; None when that is only the last step (the horizon cannot show a plateau)."""
    for i, (step, v) in enumerate(zip(steps[:-1], values[:-1], strict=True)):
        if all(later >= v - tolerance * abs(v) for later in values[i + 1 :]):
            return step
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--every", type=int, default=1000)
    p.add_argument("--tolerance", type=float, default=0.1)
    p.add_argument("--jobs", type=int, default=mp.cpu_count())
    p.add_argument("--out", default="")
    args = p.parse_args()
    from bench.datasets import create_dataset
    from bench.metrics.base import primary

    key = primary(create_dataset(args.dataset).metrics).name
    jobs = [(args.dataset, args.steps, args.every, s) for s in range(args.seeds)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(one_run, jobs, chunksize=1)
    train, model = protocol(args.dataset)
    refs = references(args.dataset, train.get("eval_samples", 10_000))
    steps = sorted(set.intersection(*(set(r["evals"]) for r in results)))
    names = [k for k in results[0]["evals"][steps[-1]] if k != "classifier_accuracy"]
    rows = []
    for s in steps:
        med = {k: statistics.median(r["evals"][s][k] for r in results) for k in names}
        rows.append([s] + [f"{med[k]:.4g}" for k in names])
    for label, values in refs.items():
        rows.append([f"*{label}*"] + [f"{values[k]:.4g}" for k in names])
    text = tabulate(rows, ["step (median of seeds)", *names], tablefmt="github")
    medians = [statistics.median(r["evals"][s][key] for r in results) for s in steps]
    found = plateau(steps, medians, args.tolerance)
    verdict = (
        f"`{key}` stops falling at step {found}: no later evaluation improves its median by "
        f"more than {args.tolerance:.0%} of its value there"
        if found
        else f"`{key}` is still falling at step {steps[-1]}: train longer"
    )
    secs = statistics.median(r["seconds"] for r in results)
    wall = time.perf_counter() - t0
    print(text, verdict, sep="\n\n")
    out = Path(args.out or f"reports/calibration-{args.dataset}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Calibration of the {args.dataset} protocol's length\n\n"
        f"Produced by `python benchmarks/calibrate_images.py --dataset {args.dataset} --seeds "
        f"{args.seeds} --steps {args.steps} --every {args.every}`: the baseline `none` with the "
        f"`full` suite's options for this data set (model {model}, batch "
        f"{train.get('batch_size', 'default')}), untracked, one single-threaded process per core "
        f"({args.jobs}), {len(jobs)} runs in {wall:.0f} s ({secs:.0f} s per run with its "
        f"evaluations). Statuses: {', '.join(r['status'] for r in results)}. Italic rows: "
        "training images, uniform noise images and one class only, scored by the same code.\n\n"
        f"{text}\n\n**{verdict}.**\n"
    )


if __name__ == "__main__":
    main()
