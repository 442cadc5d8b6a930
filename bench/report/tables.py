"""Per-dataset tables: one row per method with robust summaries, and tests against `none`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.methods import BASELINE
from bench.report import stats

GRAD_COLUMNS = {
    "clip rate D": "summary/clip_rate/discriminator",
    "clip rate G": "summary/clip_rate/generator",
    "|g| pre D": "summary/grad_norm_pre/discriminator",
    "|g| pre G": "summary/grad_norm_pre/generator",
    "time/run s": "summary/wall_time_s",
}


def label_order(labels) -> list[str]:
    """The baseline first, then the rest alphabetically."""
    labels = sorted(set(labels))
    return [lbl for lbl in labels if lbl == BASELINE] + [lbl for lbl in labels if lbl != BASELINE]


def _col(df: pd.DataFrame, key: str) -> pd.Series:
    return df[key] if key in df else pd.Series(math.nan, index=df.index)


def method_table(df, metrics, primary, success_metric=None, worst=None) -> pd.DataFrame:
    """Numeric summary per method (index: label). Diverged runs stay in `runs` and count as
    failures in `success`; an undefined value of a metric with a declared worst value (`worst`:
    {metric: value}) counts as that value; other summaries use the runs whose value is finite
    (`n <metric>`)."""
    worst = worst or {}
    df = df.copy()
    for name, value in worst.items():
        key = f"eval/{name}"
        df[key] = _col(df, key).fillna(value)
    rows = {}
    for label in label_order(df.label):
        g = df[df.label == label]
        row = {"runs": len(g), "diverged": float((g.status == "diverged").mean())}
        if success_metric:
            row["success"] = float((_col(g, f"eval/{success_metric}").fillna(0) == 1).mean())
        for name, _ in metrics:
            values = _col(g, f"eval/{name}")
            med, q1, q3 = stats.median_iqr(values)
            row |= {name: med, f"{name} q1": q1, f"{name} q3": q3}
            row[f"n {name}"] = int(np.isfinite(values.to_numpy(dtype=float)).sum())
        mean, lo, hi = stats.bootstrap_ci(_col(g, f"eval/{primary}"))
        row |= {f"{primary} mean": mean, f"{primary} ci low": lo, f"{primary} ci high": hi}
        for col, key in GRAD_COLUMNS.items():
            row[col] = float(np.nanmean(_col(g, key))) if _col(g, key).notna().any() else math.nan
        rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    direction = dict(metrics)[primary]
    table["rank"] = stats.ranks(table[primary], direction) if len(table) else []
    return table


def significance_table(df, metrics, baseline: str = BASELINE) -> pd.DataFrame:
    """Per method and metric: Mann-Whitney U p against the baseline, Holm-adjusted over the
    methods of the table, and Cliff's delta (> 0: the method's values are larger)."""
    base = df[df.label == baseline]
    others = [lbl for lbl in label_order(df.label) if lbl != baseline]
    out = pd.DataFrame(index=others)
    if base.empty or not others:
        return out
    for name, _ in metrics:
        b = _col(base, f"eval/{name}")
        p = [stats.mann_whitney_p(_col(df[df.label == lbl], f"eval/{name}"), b) for lbl in others]
        d = [stats.cliffs_delta(_col(df[df.label == lbl], f"eval/{name}"), b) for lbl in others]
        out[f"{name} p"] = p
        out[f"{name} p holm"] = stats.holm(p)
        out[f"{name} delta"] = d
    return out


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.2e}"
    return f"{x:.{digits}g}"


def _best(series: pd.Series, direction: str) -> set:
    """The labels with the column's best value; none when every value ties (nothing to mark)."""
    s = series[np.isfinite(series.to_numpy(dtype=float))]
    if s.empty:
        return set()
    target = s.min() if direction == "min" else s.max()
    best = set(s.index[s == target])
    return set() if len(best) == len(series) else best


def format_method_table(table: pd.DataFrame, metrics, primary, success: bool,
                        references: dict | None = None, ranked: bool = True) -> str:  # fmt: skip
    """Markdown: `median [q1, q3]` cells, best per column in bold (by the column's direction,
    where the methods differ), then the reference rows in italics. `ranked=False` (a baseline
    short of the convergence gate): no rank column and no bold."""
    cols: dict[str, list[str]] = {"method": list(table.index), "runs": list(table.runs)}
    directions = {"diverged": "min", "success": "max"} | dict(metrics)

    def best_of(name: str) -> set:
        return _best(table[name], directions[name]) if ranked else set()

    for name in ["diverged"] + (["success"] if success else []):
        best = best_of(name)
        cols[name] = [_bold(f"{v:.0%}", i in best) for i, v in table[name].items()]
    for name, _ in metrics:
        best = best_of(name)
        cells = []
        for i, r in table.iterrows():
            cell = f"{_fmt(r[name])} [{_fmt(r[f'{name} q1'])}, {_fmt(r[f'{name} q3'])}]"
            if r[f"n {name}"] < r["runs"]:
                cell += f" (n={int(r[f'n {name}'])})"
            cells.append(_bold(cell, i in best))
        cols[name] = cells
    ci = [f"{_fmt(r[f'{primary} mean'])} ({_fmt(r[f'{primary} ci low'])}, "
          f"{_fmt(r[f'{primary} ci high'])})" for _, r in table.iterrows()]  # fmt: skip
    cols[f"{primary} mean (95% BCa CI)"] = ci
    if ranked:
        cols["rank"] = [_fmt(v) for v in table["rank"]]
    for col in GRAD_COLUMNS:
        cols[col] = [_fmt(v) for v in table[col]]
    out = pd.DataFrame(cols).astype(object)
    for label, values in (references or {}).items():
        row = {c: "" for c in out.columns} | {"method": f"*{label}*"}
        row |= {name: f"*{_fmt(values.get(name))}*" for name, _ in metrics}
        out.loc[len(out)] = row
    return out.to_markdown(index=False)


def format_significance(sig: pd.DataFrame, metrics) -> str:
    cols: dict[str, list[str]] = {"method": list(sig.index)}
    for name, _ in metrics:
        cols[f"{name}: p (Holm)"] = [_bold(_fmt(p), p < 0.05) for p in sig[f"{name} p holm"]]
        cols[f"{name}: delta"] = [_fmt(d, 2) for d in sig[f"{name} delta"]]
    return pd.DataFrame(cols).to_markdown(index=False)


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text
