"""The harness as a fraction of this machine's matmul limit (`make perf-limit`, minutes).

Measured in one run: the matmul peak of this machine for the protocol's shapes (`torch.bmm` of
[K, 256, 128] x [K, 128, 128], one thread per worker, as workers train), the floating-point
operations of one run-step (one D and one G update of ring8's default MLPs, batch 256, counted by
torch's FlopCounterMode, forward and backward), and the harness's run-steps per second at the
study's configuration (`--jobs` workers x populations of K). The limit is the rate at which the
counted FLOPs would run at the matmul peak on every worker; the printed line
`harness: NN % of the matmul limit` is the figure to raise. The rest of a step is elementwise
traffic and dispatch, which no matmul peak counts.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import torch

from benchmarks.perf import population_configs, population_rate


def matmul_peak(k: int, seconds: float = 2.0) -> float:
    """GFLOP/s of torch.bmm at the protocol's shapes, one thread (the median of 5 bursts)."""
    torch.set_num_threads(1)
    a, b = torch.randn(k, 256, 128), torch.randn(k, 128, 128)
    flops = 2 * k * 256 * 128 * 128
    rates = []
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 5:
            torch.bmm(a, b)
            n += 1
        rates.append(n * flops / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def run_step_flops(k: int) -> float:
    """FLOPs of one run-step (one D and one G update) of a K-member population, per member."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.datasets import create_dataset
    from bench.run import build_trainer

    trainer = build_trainer(population_configs(k, 10), create_dataset("ring8"))
    trainer._g_step(trainer._d_step())  # lazy state first
    with FlopCounterMode(display=False) as counter:
        trainer._g_step(trainer._d_step())
    return counter.get_total_flops() / k


def _rate(args) -> tuple[int, float]:
    k, steps = args
    t0 = time.perf_counter()
    population_rate(k, steps)
    return k * steps, time.perf_counter() - t0


def harness_rate(jobs: int, k: int, steps: int) -> float:
    """Run-steps per second of `jobs` single-threaded workers, each training a K-population."""
    from bench.workers import worker_init

    with mp.get_context("spawn").Pool(jobs, initializer=worker_init) as pool:
        pool.map(_rate, [(2, 5)] * jobs)  # start-up, outside the timing
        t0 = time.perf_counter()
        done = sum(n for n, _ in pool.map(_rate, [(k, steps)] * jobs, chunksize=1))
        wall = time.perf_counter() - t0
        pool.close()
        pool.join()
    return done / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="workers (the study's: one per core)")
    ap.add_argument("--population", type=int, default=16, help="K (the study's: auto on CPU)")
    ap.add_argument("--steps", type=int, default=300, help="steps each worker trains")
    args = ap.parse_args()
    k = args.population
    peak = matmul_peak(k)
    flops = run_step_flops(k)
    rate = harness_rate(args.jobs, k, args.steps)
    limit = args.jobs * peak * 1e9 / flops
    print(f"matmul peak, bmm [{k}, 256, 128] x [{k}, 128, 128], one thread: {peak:.1f} GFLOP/s")
    print(f"one run-step (ring8 MLP, batch 256, one D and one G update): {flops / 1e6:.1f} "
          "MFLOP (counted)")  # fmt: skip
    print(f"limit on {args.jobs} workers: {limit:.0f} run-steps/s; harness, {args.jobs} "
          f"workers x K={k}: {rate:.0f} run-steps/s")  # fmt: skip
    print(f"harness: {100 * rate / limit:.0f} % of the matmul limit")


if __name__ == "__main__":
    main()
