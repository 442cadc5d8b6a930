"""Speed of the harness against a bare, hand-written PyTorch loop (`make perf`).

Both train the same G and D (ring8, the default MLPs, batch 256, Adam, NS loss) with the same
gradient clipping (`clip_grad_norm_`, tau = 1, both roles), in one process, interleaved in rounds
so that machine noise hits every variant alike. Printed: the median time per training step of
each variant and the ratios harness / bare (statistics off) and statistics on / off.
The harness is timed over its training loop, periodic statistics flushes included (the final
evaluation is not: the bare loop has none). Then what recording costs: the same 1,000-step run
untracked, into a local SQLite store, and into an `mlflow server` on loopback. Then parallel
runs: run-steps per second of the same runs one after another in this process, on `--jobs`
worker processes of one thread each (what suites and sweeps do), as populations of K runs in
one process (bench/population.py), and as populations on every worker, interleaved, with the
ratios against the sequential harness, and the aten ops each generator step dispatches at each
K (on a GPU, kernel launches: what bounds a small model there). Where CUDA is present, last,
the GPU populations of benchmarks/gpu_population.py (run-steps/s and peak memory per member).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.config import ModelSpec
from bench.datasets import create_dataset
from bench.models import build_models
from bench.run import execute, execute_population, resolve


def bare_loop(steps: int, batch: int, seed: int = 0) -> float:
    """The loop a person would write by hand; returns seconds per step."""
    torch.manual_seed(seed)
    g, d = build_models(ModelSpec())
    data = create_dataset("ring8")
    data_rng = torch.Generator().manual_seed(seed)
    noise_rng = torch.Generator().manual_seed(seed + 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(data.means), (batch,), generator=data_rng)
        real = data.means[idx] + data.sigma * torch.randn(batch, 2, generator=data_rng)
        with torch.no_grad():
            fake = g(torch.randn(batch, 2, generator=noise_rng))
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        torch.nn.utils.clip_grad_norm_(d.parameters(), 1.0, foreach=True)
        opt_d.step()
        fake = g(torch.randn(batch, 2, generator=noise_rng))
        loss_g = F.softplus(-d(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(g.parameters(), 1.0, foreach=True)
        opt_g.step()
    return (time.perf_counter() - t0) / steps


def harness(steps: int, batch: int, stats: bool) -> float:
    train = {"steps": steps, "batch_size": batch, "stats": stats, "eval_every": 10**6,
             "eval_samples": 10, "log_every": 100}  # fmt: skip
    cfg = resolve("ring8", [("norm_clip", {"max_norm": "1.0"})], train, {}, 0, "cpu")
    return execute(cfg).train_time_s / steps


def tracked_run(tracker, steps: int) -> float:
    """Wall seconds of one recorded 2-D run (the default model, logging every 100 steps, one
    final evaluation, artifacts), or of the same run untracked when `tracker` is None."""
    from bench.record import run_tracked

    train = {"steps": steps, "eval_every": steps, "log_every": 100}
    cfg = resolve("ring8", [("norm_clip", {"max_norm": 1.0})], train, {}, 0, "cpu")
    t0 = time.perf_counter()
    if tracker is None:
        execute(cfg)
    else:
        run_tracked(cfg, tracker, "perf-tracking")
    return time.perf_counter() - t0


@contextlib.contextmanager
def loopback_server(folder: Path):
    """`mlflow server` on a free loopback port, its store in `folder`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/server.db",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait()


def tracking_cost(steps: int, rounds: int) -> None:
    """What recording a run costs: untracked vs local SQLite vs a loopback MLflow server,
    interleaved; printed as seconds per run and as a share of the untracked run."""
    from bench.tracking import MlflowTracker

    with tempfile.TemporaryDirectory() as d, loopback_server(Path(d) / "server") as url:
        variants = {"untracked": None, "local SQLite": MlflowTracker(f"sqlite:///{d}/m.db"),
                    "loopback server": MlflowTracker(url)}  # fmt: skip
        for t in variants.values():
            tracked_run(t, 50)  # warm-up: experiment creation, imports, connections
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(rounds):
            for name, t in variants.items():
                times[name].append(tracked_run(t, steps))
    base = statistics.median(times["untracked"])
    print(f"tracking cost, {rounds} interleaved rounds of one {steps}-step ring8 run "
          f"(untracked {base:.2f} s):")  # fmt: skip
    for name in ("local SQLite", "loopback server"):
        extra = statistics.median(times[name]) - base
        print(f"  {name:>15}: +{extra:.2f} s per run ({extra / base:+.1%})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--tracking-steps", type=int, default=1000, help="0 skips the tracking part")
    p.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="1 skips the parallel part"
    )
    p.add_argument("--parallel-steps", type=int, default=1000)
    p.add_argument("--population-steps", type=int, default=300, help="0 skips populations")
    p.add_argument("--conv-steps", type=int, default=10, help="DCGAN populations; 0 skips them")
    args = p.parse_args()
    torch.set_num_threads(1)  # one thread per process: see the README's CPU notes
    variants = {
        "bare": lambda: bare_loop(args.steps, args.batch),
        "harness, statistics off": lambda: harness(args.steps, args.batch, False),
        "harness, statistics on": lambda: harness(args.steps, args.batch, True),
    }
    for fn in variants.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(fn())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, batch {args.batch}")
    print(f"{args.rounds} interleaved rounds x {args.steps} steps (norm_clip on G and D):")
    # The fastest round is the least disturbed by the machine; the median shows the spread.
    for stat in (min, statistics.median):
        t = {k: stat(v) for k, v in times.items()}
        off, on, bare = t["harness, statistics off"], t["harness, statistics on"], t["bare"]
        print(
            f"{stat.__name__:>6}: bare {bare * 1e3:.3f} ms/step, harness {off * 1e3:.3f} "
            f"(statistics on {on * 1e3:.3f}); harness/bare {off / bare:.3f}, "
            f"statistics on/off {on / off:.3f}, on/bare {on / bare:.3f}  (targets <= 1.05)"
        )
    if args.tracking_steps:
        tracking_cost(args.tracking_steps, max(3, args.rounds // 2))
    if args.jobs > 1:
        parallel_throughput(args.jobs, args.parallel_steps, max(2, args.rounds // 3))
    if args.population_steps:
        population_throughput(args.jobs, args.population_steps, max(2, args.rounds // 3),
                              args.conv_steps)  # fmt: skip
    if torch.cuda.is_available():  # the same as benchmarks/gpu_population.py alone
        from gpu_population import table

        print(f"GPU: {torch.cuda.get_device_name()}")
        table("MLP on ring8, batch 256", [1, 64, 256, 1024], 200, "cuda")
        table("DCGAN on digits, batch 64", [1, 16, 64], 50, "cuda", dataset="digits", batch=64)


def _one_run(steps: int) -> int:
    harness(steps, 256, True)
    return steps


def population_configs(k: int, steps: int, device: str = "cpu", model: dict | None = None,
                       dataset: str = "ring8", batch: int = 256) -> list:  # fmt: skip
    """K members of the perf run (norm clipping at K different thresholds, K seeds)."""
    train = {"steps": steps, "batch_size": batch, "eval_every": 10**6, "eval_samples": 10,
             "log_every": 100}  # fmt: skip
    return [resolve(dataset, [("norm_clip", {"max_norm": 0.5 + i / k})], train, model or {},
                    i, device) for i in range(k)]  # fmt: skip


def population_rate(k: int, steps: int, device: str = "cpu", **kw) -> float:
    """Run-steps per second of one K-member population (its training loop)."""
    results = execute_population(population_configs(k, steps, device, **kw))
    return k * steps / results[0].train_time_s


def ops_per_step(k: int, steps: int = 4, device: str = "cpu") -> float:
    """aten ops dispatched per generator step of a K-member population (MLP, norm clipping,
    statistics on; n_critic 1): on a GPU each is roughly one kernel launch, the cost that
    bounds small models there, so this should not grow with K."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from bench.datasets import create_dataset
    from bench.run import build_trainer

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    trainer = build_trainer(
        population_configs(k, 10, device), create_dataset("ring8", device=device)
    )
    for counting in (False, True):  # the first steps build lazy state (Adam's moments)
        with Count() if counting else contextlib.nullcontext() as c:
            for _ in range(steps):
                trainer._g_step(trainer._d_step())
                trainer.step += 1
    return c.n / steps


def _population_task(args) -> int:
    k, steps = args
    population_rate(k, steps)
    return k * steps


def population_throughput(jobs: int, steps: int, rounds: int, conv_steps: int,
                          sizes=(1, 4, 16, 64)) -> None:  # fmt: skip
    """Run-steps per second of MLP populations of K runs in this process (one thread), of
    populations on each of `jobs` workers, and of DCGAN populations (digits, batch 64), against
    sequential single runs, interleaved."""
    import multiprocessing as mp

    from bench.workers import worker_init

    k_jobs = max(sizes)
    rates: dict[str, list[float]] = {"sequential": []}
    with mp.get_context("spawn").Pool(jobs, initializer=worker_init) as pool:
        pool.map(_population_task, [(2, 10)] * jobs)  # start-up, outside the timing
        population_rate(2, 10)
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(2):
                _one_run(steps)
            rates["sequential"].append(2 * steps / (time.perf_counter() - t0))
            for k in sizes:
                rates.setdefault(f"population K={k}", []).append(population_rate(k, steps))
            for k in sizes if conv_steps else ():
                rates.setdefault(f"dcgan K={k}", []).append(
                    population_rate(k, conv_steps, dataset="digits", batch=64)
                )
            t0 = time.perf_counter()
            done = sum(pool.map(_population_task, [(k_jobs, steps)] * jobs, chunksize=1))
            rates.setdefault(f"{jobs} workers x K={k_jobs}", []).append(
                done / (time.perf_counter() - t0)
            )
    med = {k: statistics.median(v) for k, v in rates.items()}
    seq = med["sequential"]
    print(f"populations ({rounds} interleaved rounds, {steps} steps, MLP on ring8, statistics "
          f"on, one thread per process):")  # fmt: skip
    for name, rate in med.items():
        if not name.startswith("dcgan"):
            print(f"  {name:>22}: {rate:8.0f} run-steps/s  ({rate / seq:.2f}x sequential)")
    counts = {k: ops_per_step(k) for k in (1, *sizes[1:], 256)}
    print("  aten ops per generator step (one D and one G update; ~ kernel launches on a GPU): "
          + ", ".join(f"K={k} {n:.0f}" for k, n in counts.items()))  # fmt: skip
    if conv_steps:
        one = med["dcgan K=1"]
        print(f"DCGAN on digits, batch 64, {conv_steps} steps, one thread:")
        for k in sizes:
            rate, name = med[f"dcgan K={k}"], f"population K={k}"
            print(f"  {name:>22}: {rate:8.1f} run-steps/s  ({rate / one:.2f}x K=1)")


def parallel_throughput(jobs: int, steps: int, rounds: int) -> None:
    """Run-steps per second of 2 x jobs calibrated-size runs: sequential in this process vs
    spread over `jobs` single-threaded workers (bench.workers.worker_init, as suites use)."""
    import multiprocessing as mp

    from bench.workers import worker_init

    n = 2 * jobs
    rates: dict[str, list[float]] = {"sequential": [], f"{jobs} workers": []}
    with mp.get_context("spawn").Pool(jobs, initializer=worker_init) as pool:
        pool.map(_one_run, [10] * jobs)  # start-up and imports, outside the timing
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                _one_run(steps)
            rates["sequential"].append(n * steps / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            pool.map(_one_run, [steps] * n, chunksize=1)
            rates[f"{jobs} workers"].append(n * steps / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    seq, par = med["sequential"], med[f"{jobs} workers"]
    print(f"parallel runs ({rounds} interleaved rounds of {n} runs x {steps} steps, statistics "
          f"on): sequential {seq:.0f} run-steps/s, {jobs} workers {par:.0f} run-steps/s, "
          f"ratio {par / seq:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
