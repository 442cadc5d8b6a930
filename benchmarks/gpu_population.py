"""Populations on a GPU: run-steps per second and memory of K runs trained as one population.

    python benchmarks/gpu_population.py            # on a machine with CUDA, under 5 minutes
    python benchmarks/gpu_population.py --device cpu --sizes 1,4 --steps 50   # a smoke test

For the MLP on ring8 (batch 256, norm clipping at K thresholds, statistics on) at K in
{1, 64, 256, 1024}, and DCGAN on digits at K in {1, 16, 64}: the training loop's run-steps per
second (after a warm-up population), its ratio to K = 1 on the same device, and the peak device
memory of the population, in total and per member. The issue's targets: K = 256 MLP >= 100x the
run-steps per second of one run, and 1,000 members within 16 GB.
"""

from __future__ import annotations

import argparse
import time

import torch
from perf import population_configs

from bench.run import execute_population


def measure(k: int, steps: int, device: str, **kw) -> tuple[float, float]:
    """(run-steps per second, peak device memory in MiB) of one K-member population."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    results = execute_population(population_configs(k, steps, device, **kw))
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    return k * steps / results[0].train_time_s, peak


def table(title: str, sizes: list[int], steps: int, device: str, **kw) -> None:
    measure(2, 20, device, **kw)  # warm-up: kernels, allocator, imports
    print(f"{title} ({steps} steps per population, statistics on):")
    base = None
    for k in sizes:
        t0 = time.perf_counter()
        rate, peak = measure(k, steps, device, **kw)
        base = base or rate
        print(f"  K={k:5d}: {rate:10.0f} run-steps/s  {rate / base:7.1f}x K=1   peak "
              f"{peak:9.1f} MiB ({peak / k:7.2f} per member)  [{time.perf_counter() - t0:.0f} s]",
              flush=True)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--sizes", default="1,64,256,1024", help="MLP population sizes")
    p.add_argument("--conv-sizes", default="1,16,64", help="DCGAN population sizes")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; use --device cpu for a smoke test")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"torch {torch.__version__}, {name}")
    t0 = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    table("MLP on ring8, batch 256", sizes, args.steps, args.device)
    conv = [int(s) for s in args.conv_sizes.split(",") if s]
    if conv:
        table("DCGAN on digits, batch 64", conv, max(20, args.steps // 4), args.device,
              dataset="digits", batch=64)  # fmt: skip
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
