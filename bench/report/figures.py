"""Report figures: metric over training per method, gradient-norm distributions, final samples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.plots import plt, scatter_samples


def curves(path: Path, histories: dict[str, pd.DataFrame], order: list[str]) -> None:
    """Median over seeds with an IQR band, one panel per metric, one line per method."""
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.6), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax, (metric, hist) in zip(axes[0], histories.items(), strict=True):
        for i, label in enumerate(order):
            h = hist[hist.label == label]
            if h.empty:
                continue
            g = h.groupby("step")["value"]
            med, lo, hi = g.median(), g.quantile(0.25), g.quantile(0.75)
            ax.plot(med.index, med.values, label=label, color=cmap(i % 20), lw=1.4)
            ax.fill_between(med.index, lo.values, hi.values, color=cmap(i % 20), alpha=0.15)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("generator step")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def grad_norm_boxes(path: Path, histories: dict[str, pd.DataFrame], order: list[str]) -> None:
    """Distribution of the logged pre-method gradient norms per method (all seeds, all steps)."""
    fig, axes = plt.subplots(1, len(histories), figsize=(6 * len(histories), 3.8), squeeze=False)
    for ax, (role, hist) in zip(axes[0], histories.items(), strict=True):
        data = [hist.loc[hist.label == lbl, "value"].to_numpy() for lbl in order]
        data = [d[np.isfinite(d) & (d > 0)] for d in data]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(order) + 1), order, rotation=45, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{role}: gradient norm before the method acted", fontsize=10)
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
