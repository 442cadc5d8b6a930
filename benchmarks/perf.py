"""Speed of the harness against a bare, hand-written PyTorch loop (`make perf`).

Both train the same G and D (ring8, the default MLPs, batch 256, Adam, NS loss) with the same
gradient clipping (`clip_grad_norm_`, tau = 1, both roles), in one process, interleaved in rounds
so that machine noise hits every variant alike. Printed: the median time per training step of
each variant and the ratios harness / bare (statistics off) and statistics on / off.
The harness is timed over its training loop, periodic statistics flushes included (the final
evaluation is not: the bare loop has none).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench.config import ModelSpec
from bench.datasets import create_dataset
from bench.models import build_models
from bench.run import execute, resolve


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
        real = data.sample(batch, data_rng)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
