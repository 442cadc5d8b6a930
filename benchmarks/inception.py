"""Inception FID on this machine: is the conversion the FID network, and what does it cost?
(`python benchmarks/inception.py`, after `make weights`).

Prints: per kind of image, the max abs difference of 2048-d pool features between the converted
torch-fidelity extractor and the original TorchScript module given the same preprocessing
(torch-fidelity's TF 1.x resize, then (x - 128) / 128), and, for scale, the difference the
preprocessing alone makes (fid-helper's own grid-sample resize instead); then seconds per 1,000
images of Inception features (28 px grayscale, like Fashion-MNIST) on 1 and 2 threads, and what
that makes of a 10,000-sample evaluation.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench.datasets import create_dataset
from bench.metrics import inception


def fid_helper_input(x: torch.Tensor) -> torch.Tensor:
    """fid-helper's default preprocessing ('nv_bilinear_float': StyleGAN's grid-sample resize
    of [0, 1] values, then the range [-1, 0.9921875]), for comparison only."""
    x = x.float() / 255
    n, c, h, w = x.shape
    theta = torch.eye(2, 3).repeat(n, 1, 1)
    theta[:, 0, 2] += 1 / w - 1 / 299
    theta[:, 1, 2] += 1 / h - 1 / 299
    grid = F.affine_grid(theta, [n, c, 299, 299], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x.clamp(0, 1) * (0.9921875 + 1) - 1


@torch.no_grad()
def agreement(per_kind: int) -> None:
    ours = inception.extractor(inception.weights_file())
    theirs = inception.load_torchscript(inception.original_file())
    digits = create_dataset("digits", extractor="cnn").test_x
    worst = 0.0
    for kind, x in inception.agreement_images(digits, per_kind).items():
        a = torch.cat([ours(x[i : i + 8])[0] for i in range(0, len(x), 8)])
        b = torch.cat([theirs(inception.torchscript_input(x[i : i + 8]))
                       for i in range(0, len(x), 8)])  # fmt: skip
        c = torch.cat([theirs(fid_helper_input(x[i : i + 8])) for i in range(0, len(x), 8)])
        diff = float((a - b).abs().max())
        worst = max(worst, diff)
        print(f"{kind:>16} ({len(x)} images, {x.shape[-1]} px): max |converted - original| "
              f"{diff:.2e} (features up to {float(a.abs().max()):.2f}); other resize: "
              f"{float((c - b).abs().max()):.2e}")  # fmt: skip
    print(f"all {5 * per_kind} images: max abs difference {worst:.2e}")


@torch.no_grad()
def seconds_per_1000(threads: int, n: int) -> tuple[float, float]:
    """(wall-clock, CPU) seconds per 1,000 images: on a shared machine the CPU time is the
    steadier figure of what the work costs, the wall clock what it took this time."""
    torch.set_num_threads(threads)
    ours = inception.extractor(inception.weights_file())
    x = torch.randint(0, 256, (n, 3, 28, 28), dtype=torch.uint8)
    ours(x[:4])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n, 16):
        ours(x[i : i + 16])
    return (time.perf_counter() - t0) / n * 1000, (time.process_time() - c0) / n * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-kind", type=int, default=16, help="images of each of the 5 kinds")
    p.add_argument("--timing-images", type=int, default=64)
    args = p.parse_args()
    if args.per_kind:
        agreement(args.per_kind)
    for threads in (1, 2):
        wall, cpu = seconds_per_1000(threads, args.timing_images)
        print(f"{threads} thread(s): {wall:.0f} s per 1,000 images ({cpu:.0f} CPU s); a "
              f"10,000-sample evaluation {10 * wall / 60:.0f} min of features (twice that "
              "while the reference split's features are not cached yet)")  # fmt: skip


if __name__ == "__main__":
    main()
