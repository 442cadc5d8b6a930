"""Pictures of generated samples: 2-D scatters with the true modes marked, image grids; one
run's (artifact) or one per method (report). Samples decide the kind: [N, 2] points or
[N, C, H, W] images in [-1, 1]."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.plots import plt


def scatter_samples(ax, samples: np.ndarray, means: np.ndarray | None, title: str = "") -> None:
    """Generated 2-D samples, with the true mixture means marked (1-D samples, as the
    Dirac-GAN's, on a line at y = 0)."""
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = np.concatenate([samples, np.zeros_like(samples)], axis=1)
    if means is not None and means.ndim == 2 and means.shape[1] == 1:
        means = np.concatenate([means, np.zeros_like(means)], axis=1)
    finite = samples[np.isfinite(samples).all(axis=1)]
    ax.scatter(finite[:, 0], finite[:, 1], s=2, alpha=0.4, color="tab:blue", linewidths=0)
    if means is not None:
        ax.scatter(means[:, 0], means[:, 1], s=30, marker="x", color="tab:red", linewidths=1)
        pad = 0.25 * (means.max() - means.min()) + 0.2
        ax.set_xlim(means[:, 0].min() - pad, means[:, 0].max() + pad)
        ax.set_ylim(means[:, 1].min() - pad, means[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(finite) < len(samples):
        title += f" ({len(samples) - len(finite)} non-finite)"
    ax.set_title(title, fontsize=8)


def save_samples(path: Path, samples: np.ndarray, means: np.ndarray | None, title: str) -> None:
    fig, ax = plt.subplots(figsize=(4, 4))
    scatter_samples(ax, samples, means, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _grid(samples: np.ndarray, cols: int = 8) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> one [rows*H, cols*W, C] image in [0, 1]."""
    import torch
    from torchvision.utils import make_grid

    t = torch.as_tensor(samples).float().clamp(-1, 1).add(1).div(2)
    return make_grid(t, nrow=cols, padding=1, pad_value=1.0).permute(1, 2, 0).numpy()


def save_image_grid(path: Path, samples: np.ndarray, title: str) -> None:
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(_grid(samples), interpolation="nearest")
    ax.axis("off")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_image_panels(path: Path, samples_by_label: dict[str, np.ndarray]) -> None:
    """One small image grid per label (one seed per method), for reports."""
    n = len(samples_by_label)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, s) in zip(axes.flat, samples_by_label.items(), strict=False):
        ax.imshow(_grid(s, cols=4), interpolation="nearest")
        ax.set_title(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_grid(path: Path, samples: dict[str, np.ndarray], means: np.ndarray | None) -> None:
    """One scatter per method (one seed each), true modes marked."""
    n = len(samples)
    cols = min(n, 6)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, s) in zip(axes.flat, samples.items(), strict=False):
        ax.axis("on")
        scatter_samples(ax, s, means, label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_run_samples(path: Path, samples: np.ndarray, title: str, landmarks=None) -> None:
    """One run's final samples: a scatter (2-D) or a grid of the first 64 images."""
    if samples.ndim == 4:
        save_image_grid(path, samples[:64], title)
    else:
        save_samples(path, samples, landmarks, title)


def save_method_samples(path: Path, samples_by_label: dict, landmarks=None) -> None:
    """One panel per method (one seed each)."""
    first = next(iter(samples_by_label.values()))
    if first.ndim == 4:
        save_image_panels(path, {k: v[:16] for k, v in samples_by_label.items()})
    else:
        sample_grid(path, samples_by_label, landmarks)
