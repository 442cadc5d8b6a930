"""Success across the axes of a suite: a heatmap of methods x cells, colour = success rate,
text = k / n (does a stabilizer keep training alive where the baseline fails?)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.plots import plt


def success_heatmap(path: Path, table: pd.DataFrame, labels: list[str], cells: list[str]) -> None:
    """`table`: index (label, cell), columns k (successes) and n (runs)."""
    rate = np.full((len(labels), len(cells)), np.nan)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(cells), 0.9 + 0.45 * len(labels)))
    for i, label in enumerate(labels):
        for j, cell in enumerate(cells):
            if (label, cell) in table.index:
                k, n = table.loc[(label, cell), ["k", "n"]]
                rate[i, j] = k / n
                ax.text(j, i, f"{int(k)}/{int(n)}", ha="center", va="center", fontsize=8)
    image = ax.imshow(rate, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cells)), [c.replace(",", "\n") for c in cells], fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    fig.colorbar(image, ax=ax, label="success rate", fraction=0.05)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def success_curves(path: Path, table: pd.DataFrame, ladder: dict[str, float],
                   labels: list[str], axis: str) -> None:  # fmt: skip
    """Success rate against one numeric axis per method, with its 95 % Wilson band."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    cmap = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        rows = [(x, table.loc[(label, c)]) for c, x in ladder.items() if (label, c) in table.index]
        if not rows:
            continue
        rows.sort(key=lambda r: r[0])
        xs = [x for x, _ in rows]
        color = cmap(i % 10)
        ax.plot(xs, [r.k / r.n for _, r in rows], "o-", color=color, label=label, lw=1.3)
        ax.fill_between(xs, [r.low for _, r in rows], [r.high for _, r in rows], color=color,
                        alpha=0.15, lw=0)  # fmt: skip
    xs = list(ladder.values())
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(axis)
    ax.set_ylabel("success rate (95 % Wilson band)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
