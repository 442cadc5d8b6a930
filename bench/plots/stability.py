"""The stability map: per method, success rate and the primary metric against the learning-rate
multiplier (does a stabilizer widen the range of step sizes that train?)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.plots import plt
from bench.plots.training import readable_log_ticks


def stability_map(path: Path, table: pd.DataFrame, primary: str, direction: str) -> None:
    """`table`: rows (label, lr_mult) with columns success, median, q1, q3."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    cmap = plt.get_cmap("tab20")
    for i, (label, g) in enumerate(table.groupby(level=0, sort=False)):
        g = g.droplevel(0).sort_index()
        color = cmap(i % 20)
        axes[0].plot(g.index, 100 * g["success"], "o-", color=color, label=label, lw=1.3)
        err = [(g["median"] - g["q1"]).clip(lower=0), (g["q3"] - g["median"]).clip(lower=0)]
        axes[1].errorbar(g.index, g["median"], yerr=err, fmt="o-", color=color, lw=1.3,
                         capsize=2)  # fmt: skip
    better = "lower" if direction == "min" else "higher"
    for ax, title in ((axes[0], "success rate (%)"),
                      (axes[1], f"{primary}: median and IQR ({better} is better)")):  # fmt: skip
        ax.set_xscale("log")
        readable_log_ticks(ax.xaxis)
        ax.set_xlabel("learning-rate multiplier (x the recipe's rates)")
        ax.set_title(title, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
