"""Training figures: gradient norms of one run, metric curves and norm distributions of many."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.params import ROLES
from bench.plots import plt


def save_grad_norms(path: Path, history: list[tuple[int, dict[str, float]]]) -> None:
    """Pre- and post-method global gradient norm over training, one panel per role."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, role in zip(axes, sorted(ROLES), strict=True):
        for kind, style in (("norm_pre", "-"), ("norm_post", "--")):
            pts = [(s, m[f"grad/{role}/{kind}"]) for s, m in history if f"grad/{role}/{kind}" in m]
            if pts:
                steps, vals = zip(*pts, strict=True)
                ax.plot(steps, vals, style, label=kind.replace("norm_", ""))
        ax.set_yscale("log")
        readable_log_ticks(ax.yaxis)
        ax.set_title(f"{role} gradient norm", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def readable_log_ticks(axis) -> None:
    """Log-axis labels as plain numbers (0.01, 1, 100) at decades only: no 10^-1.7 minor labels
    crowding an axis that spans less than a decade."""
    from matplotlib import ticker

    axis.set_major_locator(ticker.LogLocator(base=10, numticks=8))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


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
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:  # one legend, for the lines that were drawn
        fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
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
        readable_log_ticks(ax.yaxis)
        ax.set_title(f"{role}: gradient norm before the method acted", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
