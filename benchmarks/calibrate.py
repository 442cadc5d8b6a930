"""Calibrate the 2-D protocols (`make calibrate`): does the baseline converge, and does it still
fail on some seeds?

For each candidate setting, `none` trains on seeds 0..N-1 (N = 10 by default), one
single-threaded process per core, untracked; printed and written to reports/calibration.md: the
median high-quality fraction and mode count, the success rate (every mode captured and at least
half the samples high quality), the seeds that miss modes or diverge, the median primary metric
and the seconds per run. A protocol is valid for the benchmark when the median `hq_fraction`
reaches the gate (0.85) on both mixtures, and `none` misses modes or diverges on some seeds of at
least one of them, so that a stabilizer has something to fix.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from pathlib import Path

from tabulate import tabulate

# (label, dataset, train options, model options). Each line is one protocol to check.
CANDIDATES = [
    ("ring8, default, 5k", "ring8", {"steps": 5000}, {}),
    ("ring8, default, 10k", "ring8", {"steps": 10000}, {}),
    ("grid25, default, 10k", "grid25", {"steps": 10000}, {}),
    ("grid25, lr 1e-3, 5k", "grid25", {"steps": 5000, "lr_g": 1e-3, "lr_d": 1e-3}, {}),
    ("grid25, lr 1e-3, 10k", "grid25", {"steps": 10000, "lr_g": 1e-3, "lr_d": 1e-3}, {}),
]


def one_run(job: tuple) -> dict:
    import torch

    from bench.run import execute, resolve

    torch.set_num_threads(1)  # one thread per process, one process per core
    label, dataset, train, model, seed = job
    train = {"eval_every": train["steps"], "log_every": 500, "stats": False} | train
    cfg = resolve(dataset, [("none", {})], train, model, seed, "cpu")
    t0 = time.perf_counter()
    result = execute(cfg)
    m = {k.removeprefix("eval/"): v for k, v in result.metrics.items()}
    return {"label": label, "seed": seed, "status": result.status,
            "seconds": time.perf_counter() - t0, **m}  # fmt: skip


def summarize(label: str, rows: list[dict], k: int) -> list:
    hq = statistics.median(r.get("hq_fraction", 0.0) for r in rows)
    modes = statistics.median(r.get("modes", 0.0) for r in rows)
    tv = statistics.median(r.get("mode_tv", 1.0) for r in rows)
    success = sum(r.get("all_modes", 0.0) == 1 for r in rows) / len(rows)
    failing = [r["seed"] for r in rows if r["status"] == "diverged" or r.get("modes", 0) < k]
    secs = statistics.median(r["seconds"] for r in rows)
    return [label, f"{hq:.3f}", f"{modes:g} of {k}", f"{tv:.3f}", f"{success:.0%}",
            ",".join(map(str, failing)) or "none", "yes" if hq >= 0.85 else "no",
            f"{secs:.1f}"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--jobs", type=int, default=mp.cpu_count())
    p.add_argument("--only", default="", help="run only candidates whose label contains this")
    p.add_argument("--out", default="reports/calibration.md")
    args = p.parse_args()
    chosen = [c for c in CANDIDATES if args.only in c[0]]
    jobs = [(*c, s) for c in chosen for s in range(args.seeds)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(one_run, jobs, chunksize=1)
    table = [summarize(label, [r for r in results if r["label"] == label],
                       8 if ds == "ring8" else 25) for label, ds, _, _ in chosen]  # fmt: skip
    head = ["setting (none, default MLP unless said)", "median hq_fraction", "median modes",
            "median mode_tv", "success", "seeds missing modes or diverged", "gate (>= 0.85)",
            "s/run (1 thread)"]  # fmt: skip
    text = tabulate(table, head, tablefmt="github")
    wall = time.perf_counter() - t0
    print(text)
    print(f"{len(jobs)} runs on {args.jobs} processes in {wall:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Calibration of the 2-D protocols\n\n"
        f"Produced by `python benchmarks/calibrate.py --seeds {args.seeds}` (`make calibrate`): "
        f"the baseline `none` on seeds 0-{args.seeds - 1}, untracked, one single-threaded "
        f"process per core ({args.jobs}), {len(jobs)} runs in {wall:.0f} s.\n\n{text}\n"
    )


if __name__ == "__main__":
    main()
