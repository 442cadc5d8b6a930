"""Cost of image evaluation (`make perf-images`).

Prints: the base classifiers' test accuracy (trained once, then cached); the time of one
evaluation when the real split's reference features must be computed versus when they come from
the cache; the time per image of feature extraction; and the peak resident memory of a process
that evaluates 10,000 generated samples (measured in a fresh subprocess, so nothing else counts).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time

import torch

from bench.config import ModelSpec
from bench.datasets import create_dataset
from bench.metrics import images
from bench.metrics.classifier import load_or_train
from bench.models import build_models
from bench.trainer import Sampler


def _sampler(data, z_dim: int = 64) -> Sampler:
    torch.manual_seed(0)
    spec = ModelSpec(**type(data).model_defaults() | {"z_dim": z_dim})
    g, _ = build_models(spec)
    return Sampler(g, z_dim, torch.device("cpu"), seed=0)


def eval_times(name: str, n: int) -> tuple[float, float]:
    data = create_dataset(name)
    load_or_train(data, progress=True)
    shutil.rmtree(images.cache_root(), ignore_errors=True)
    sampler = _sampler(data)
    t0 = time.perf_counter()
    data.evaluate(sampler, n)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    data.evaluate(sampler, n)
    return cold, time.perf_counter() - t0


def per_image(name: str, n: int = 4096) -> float:
    data = create_dataset(name)
    net, _, _ = load_or_train(data)
    images.register_cnn(f"{name}-cnn", net, per_channel=False)
    extractor = images._extractor_class()(f"{name}-cnn", ["features"])
    x = data.test_x[:n]
    extractor(x[:64])
    t0 = time.perf_counter()
    for i in range(0, len(x), 500):
        extractor(x[i : i + 500])
    return (time.perf_counter() - t0) / len(x)


def peak_memory_child(name: str, n: int) -> None:
    data = create_dataset(name)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = data.evaluate(_sampler(data), n)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{peak / 2**20:.3f} {before / 2**20:.3f} {sorted(out)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return peak_memory_child(args.dataset, args.samples)
    for name in ("digits", args.dataset):
        _, acc, trained = load_or_train(create_dataset(name), progress=True)
        print(f"classifier {name}: test accuracy {acc:.4f}" + (" (trained now)" if trained else ""))
    cold, warm = eval_times(args.dataset, args.samples)
    print(f"evaluation of {args.samples} samples on {args.dataset}: {cold:.1f} s computing the "
          f"reference features, {warm:.1f} s with them cached")  # fmt: skip
    us = per_image(args.dataset) * 1e6
    print(f"feature extraction ({args.dataset}-cnn, CPU): {us:.0f} us/image")
    cmd = [sys.executable, __file__, "--child", "--dataset", args.dataset, "--samples",
           str(args.samples)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    peak, before, keys = out.split(" ", 2)
    print(f"peak resident memory of a {args.samples}-sample evaluation: {float(peak):.2f} GiB "
          f"(before evaluating: {float(before):.2f} GiB; target < 2 GiB)")  # fmt: skip
    print(f"metrics: {keys.strip()}")


if __name__ == "__main__":
    main()
