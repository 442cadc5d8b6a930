"""The stability study's section of a report: where each method keeps training alive across the
cells of the suite's axes, against the baseline, with intervals and tests.

Per method and cell: successes k / n with a 95 % Wilson interval, the median primary metric,
divergences and the clip rate; against the baseline in the same cell, Fisher's exact test on the
success counts, Holm-corrected over methods and cells. Per method overall: the success rate over
the stress cells (every cell but the reference) as a paired difference with the baseline on the
same seeds, with a bootstrap interval, and the stable range along each numeric axis (the largest
value whose success is at least 50 %, the other axes at the reference), with a bootstrap interval
over seeds. A method that misses the convergence gate at the reference cell is marked, not
ranked. Where the suite trained a second, disjoint seed set, each claim says whether it
replicated (same direction and significance on both sets).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.methods import BASELINE
from bench.metrics.base import Metric
from bench.plots.stability import success_curves, success_heatmap
from bench.report import stats
from bench.report.tables import label_order

REPLICATION = "replication"  # the `seed_set` tag of a suite's second seed set
ALPHA = 0.05


def cell_order(df: pd.DataFrame) -> list[str]:
    """The reference cell first, then the others in the order their runs started."""
    first = df.sort_values("start_time").groupby("cell", sort=False).reference_cell.first()
    names = list(first.index)
    return sorted(names, key=lambda c: (not first[c], names.index(c)))


def outcomes(df: pd.DataFrame, declared: list[Metric]) -> pd.DataFrame:
    """One row per run: label, cell, seed, seed set, ok (succeeded), value (primary metric, a
    diverged run at its worst), diverged, clip (the mean clip rate over roles)."""
    primary = next(m for m in declared if m.primary)
    success = next((m.name for m in declared if m.success), None)
    value = df.get(f"eval/{primary.name}", pd.Series(math.nan, index=df.index))
    if not math.isnan(primary.worst):
        value = value.fillna(primary.worst)
    ok = df.status != "diverged"
    if success and f"eval/{success}" in df:
        ok &= df[f"eval/{success}"].fillna(0) == 1
    clips = [c for c in df.columns if c.startswith("summary/clip_rate/")]
    clip = df[clips].mean(axis=1) if clips else pd.Series(math.nan, index=df.index)
    return pd.DataFrame({
        "label": df.label, "cell": df.cell, "seed": df.seed, "seed_set": seed_set(df),
        "ok": ok.astype(bool), "value": value, "diverged": df.status == "diverged", "clip": clip,
    }).reset_index(drop=True)  # fmt: skip


def cell_stats(out: pd.DataFrame) -> pd.DataFrame:
    """Per (label, cell): k, n, Wilson low / high, median value, diverged count, clip_rate."""
    g = out.groupby(["label", "cell"], sort=False)
    table = pd.DataFrame({"k": g.ok.sum(), "n": g.ok.size(), "median": g.value.median(),
                          "diverged": g.diverged.sum(), "clip_rate": g.clip.mean()})  # fmt: skip
    bounds = [stats.wilson(int(k), int(n)) for k, n in zip(table.k, table.n, strict=True)]
    table["low"], table["high"] = zip(*bounds, strict=True) if bounds else ((), ())
    return table


def fisher_tests(table: pd.DataFrame) -> pd.DataFrame:
    """Per (label, cell) of every method but the baseline: Fisher's p against the baseline in
    the same cell, Holm-adjusted over all of them, and the direction (+1 more successes)."""
    rows = {}
    for (label, cell), r in table.iterrows():
        if label == BASELINE or (BASELINE, cell) not in table.index:
            continue
        b = table.loc[(BASELINE, cell)]
        p = stats.fisher_p(int(r.k), int(r.n), int(b.k), int(b.n))
        rows[(label, cell)] = {"p": p, "sign": np.sign(r.k / r.n - b.k / b.n)}
    tests = pd.DataFrame.from_dict(rows, orient="index", columns=["p", "sign"])
    tests["p_holm"] = stats.holm(tests.p) if len(tests) else []
    return tests


def stress_difference(out: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per method: its success rate over the stress cells, and the paired difference with the
    baseline (per seed, over the same cells) with a BCa bootstrap interval over seeds."""
    stress = out[out.cell != reference]
    per_seed = stress.groupby(["label", "seed"]).ok.mean().unstack("label")
    rows = {}
    for label in per_seed.columns:
        rate = float(stress[stress.label == label].ok.mean())
        row = {"rate": rate, "diff": math.nan, "low": math.nan, "high": math.nan}
        if label != BASELINE and BASELINE in per_seed:
            paired = (per_seed[label] - per_seed[BASELINE]).dropna()
            row["diff"], row["low"], row["high"] = stats.bootstrap_ci(paired.to_numpy())
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def numeric_axes(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{axis: {cell: value}} for each numeric axis with at least 3 values, over the cells that
    differ from the reference in that axis alone (a ladder, e.g. the learning-rate multiplier)."""
    cols = [c for c in df.columns if c.startswith("axis.")]
    ref = df[df.reference_cell].iloc[0] if df.reference_cell.any() else None
    out = {}
    for col in cols:
        cells = df.drop_duplicates("cell").set_index("cell")
        others = [c for c in cols if c != col]
        ladder = cells[col]
        if others and ref is not None:
            same = cells[others].fillna("") == ref[others].fillna("")  # unnamed: the suite's
            ladder = ladder[same.all(axis=1)]
        try:
            values = {cell: float(v) for cell, v in ladder.dropna().items()}
        except (TypeError, ValueError):
            continue  # a categorical axis (optimizer, loss)
        if len(set(values.values())) >= 3:
            out[col.removeprefix("axis.")] = values
    return out


def stable_range(out: pd.DataFrame, ladder: dict[str, float], resamples: int = 1000):
    """Per method: the largest axis value whose success is >= 50 %, with a percentile bootstrap
    interval over seeds (the same resampled seeds for every method)."""
    rungs = out[out.cell.isin(ladder)].assign(x=lambda d: d.cell.map(ladder))
    table = rungs.groupby(["label", "seed", "x"]).ok.mean().unstack("x")
    seeds = table.index.get_level_values("seed").unique().to_numpy()
    rng = np.random.default_rng(0)
    draws = [rng.choice(seeds, seeds.size) for _ in range(resamples)]
    rows = {}
    for label in table.index.get_level_values("label").unique():
        t = table.loc[label]
        boot = [_largest(t.loc[d].mean()) for d in draws]
        low, high = np.nanpercentile(boot, [2.5, 97.5]) if boot else (math.nan, math.nan)
        rows[label] = {"range": _largest(t.mean()), "low": low, "high": high}
    return pd.DataFrame.from_dict(rows, orient="index")


def _largest(rates: pd.Series) -> float:
    ok = rates[rates >= 0.5]
    return float(ok.index.max()) if len(ok) else math.nan


def unconverged(df: pd.DataFrame, declared: list[Metric]) -> set[str]:
    """Methods whose reference-cell median of the gated metric misses the protocol's gate."""
    gated = next((m for m in declared if m.gate is not None), None)
    ref = df[df.reference_cell]
    if gated is None or f"eval/{gated.name}" not in ref:
        return set()
    medians = ref[f"eval/{gated.name}"].fillna(gated.worst).groupby(ref.label).median()
    return {label for label, v in medians.items() if not gated.passes(float(v))}


def claims(df: pd.DataFrame, declared: list[Metric]) -> dict[tuple[str, str], tuple[int, str]]:
    """{(method, where): (+1 / -1, the evidence)}: the significant differences from the
    baseline, per cell (Fisher, Holm) and over the stress cells (the paired interval excludes
    0)."""
    out = outcomes(df, declared)
    table = cell_stats(out)
    found = {}
    for (label, cell), t in fisher_tests(table).iterrows():
        if t.p_holm < ALPHA and t.sign:
            r, b = table.loc[(label, cell)], table.loc[(BASELINE, cell)]
            found[(label, f"cell {cell}")] = (
                int(t.sign),
                f"{r.k:.0f}/{r.n:.0f} against {b.k:.0f}/{b.n:.0f}, Holm p = {t.p_holm:.2g}",
            )
    reference = cell_order(df)[0]
    for label, r in stress_difference(out, reference).iterrows():
        if r.low > 0 or r.high < 0:
            found[(label, "stress cells")] = (1 if r.low > 0 else -1, f"success {r.rate:.0%}, "
                                              f"paired {r['diff']:+.2f} [{r.low:+.2f}, "
                                              f"{r.high:+.2f}]")  # fmt: skip
    return found


def stability_section(df: pd.DataFrame, dataset: str, fig_dir: Path, declared) -> str:
    """The section, when the runs span several cells (empty otherwise)."""
    cells = cell_order(df)
    if len(cells) < 2:
        return ""
    main = df[seed_set(df) != REPLICATION]
    out = outcomes(main, declared)
    table, labels = cell_stats(out), label_order(main.label)
    primary = next(m for m in declared if m.primary)
    name = f"axes_{dataset}.png"
    success_heatmap(fig_dir / name, table, labels, cells)
    images = [f"![{dataset}: success across the cells]({fig_dir.name}/{name})"]
    ladders = numeric_axes(main)
    for axis, ladder in ladders.items():
        curve = f"success_{dataset}_{axis}.png"
        success_curves(fig_dir / curve, table, ladder, labels, axis)
        images.append(f"![{dataset}: success against {axis}]({fig_dir.name}/{curve})")
    missed = unconverged(main, declared)
    return "\n\n".join([
        f"### Stability across the axes\n\nEvery method in every cell (the first is the "
        f"reference, the table above). Cells: successes k / n [95 % Wilson interval], median "
        f"`{primary.name}` (diverged runs count as failures and as the worst value), "
        f"divergences, clip rate (mean over the roles the method clips).",
        _cell_markdown(table, labels, cells), *images,
        _tests_markdown(fisher_tests(table), labels, cells),
        _robust_markdown(out, ladders, cells[0], labels, missed),
        "#### Verdict\n\n" + verdict(df, declared, missed),
    ])  # fmt: skip


def seed_set(df: pd.DataFrame) -> pd.Series:
    """Each run's seed set: `main`, or `replication` for a suite's second seed set."""
    return df["seed_set"].fillna("main") if "seed_set" in df else pd.Series("main", df.index)


def _cell_markdown(table: pd.DataFrame, labels: list[str], cells: list[str]) -> str:
    def text(label: str, cell: str) -> str:
        if (label, cell) not in table.index:
            return ""
        r = table.loc[(label, cell)]
        clip = f", clip {r.clip_rate:.2f}" if not math.isnan(r.clip_rate) else ""
        div = f", {int(r.diverged)} div." if r.diverged else ""
        return f"{int(r.k)}/{int(r.n)} [{r.low:.2f}, {r.high:.2f}], {r['median']:.3g}{div}{clip}"

    frame = pd.DataFrame({"method": labels} | {c: [text(lb, c) for lb in labels] for c in cells})
    return frame.to_markdown(index=False)


def _tests_markdown(tests: pd.DataFrame, labels: list[str], cells: list[str]) -> str:
    if tests.empty:
        return f"No method but `{BASELINE}`: nothing to test against it."

    def text(label: str, cell: str) -> str:
        if (label, cell) not in tests.index:
            return ""
        t = tests.loc[(label, cell)]
        arrow = {1: "more", -1: "fewer"}.get(int(t.sign), "same")
        p = f"{t.p_holm:.3g}"
        return f"**{p}** ({arrow})" if t.p_holm < ALPHA else f"{p} ({arrow})"

    rows = [lb for lb in labels if lb != BASELINE]
    frame = pd.DataFrame({"method": rows} | {c: [text(lb, c) for lb in rows] for c in cells})
    return (f"Successes against `{BASELINE}` in the same cell: Fisher's exact test, p-values "
            f"Holm-corrected over every method and cell (**bold**: < {ALPHA}).\n\n"
            + frame.to_markdown(index=False))  # fmt: skip


def _robust_markdown(out, ladders: dict, reference: str, labels: list[str], missed) -> str:
    diff = stress_difference(out, reference)
    ranges = {axis: stable_range(out, ladder) for axis, ladder in ladders.items()}
    rows = []
    for label in labels:
        d = diff.loc[label] if label in diff.index else None
        row = {"method": label, "stress success": f"{d.rate:.0%}" if d is not None else ""}
        row[f"vs {BASELINE} (paired, 95 % CI)"] = (
            "" if d is None or math.isnan(d["diff"])
            else f"{d['diff']:+.2f} [{d.low:+.2f}, {d.high:+.2f}]")  # fmt: skip
        for axis, r in ranges.items():
            v = r.loc[label] if label in r.index else None
            row[f"stable {axis} (95 % CI)"] = _range_text(v)
        row["note"] = "not converged at the reference" if label in missed else ""
        rows.append(row)
    return ("Over the stress cells (every cell but the reference): success rate, and the mean "
            f"per-seed difference from `{BASELINE}` on the same seeds with a BCa bootstrap "
            "interval. Stable range: the largest value of a numeric axis (the others at the "
            "reference) where at least half the seeds succeed, with a bootstrap interval over "
            "seeds; `-` where no value reaches 50 %.\n\n"
            + pd.DataFrame(rows).to_markdown(index=False))  # fmt: skip


def _range_text(v) -> str:
    if v is None or math.isnan(v["range"]):
        return "-"
    return f"{v['range']:g} [{v.low:g}, {v.high:g}]"


def verdict(df: pd.DataFrame, declared, missed: set[str]) -> str:
    """Which methods widen the stable range (significantly more successes than the baseline
    in a cell or over the stress cells), which narrow it, which do neither, with the evidence;
    with a second seed set, whether each claim replicated. A method that misses the gate at the
    reference is not ranked, but what it does is still said."""
    main = claims(df[seed_set(df) != REPLICATION], declared)
    second = df[seed_set(df) == REPLICATION]
    again = claims(second, declared) if not second.empty else None
    lines = []
    for sign, word in ((1, "more"), (-1, "fewer")):
        for (label, where), (s, evidence) in sorted(main.items()):
            if s != sign:
                continue
            line = f"- `{label}`: significantly {word} successes than `{BASELINE}` ({where}: "
            line += evidence + ")"
            if again is not None:
                same = again.get((label, where), (0,))[0] == sign
                line += "; **replicated**" if same else "; not replicated"
            lines.append(line + ("; not converged at the reference" if label in missed else ""))
    claimed = {label for label, _ in main}
    others = [lbl for lbl in label_order(df.label)
              if lbl != BASELINE and lbl not in claimed and lbl not in missed]  # fmt: skip
    if others:
        lines.append(
            "- No significant difference from `" + BASELINE + "` in any cell or over "
            "the stress cells: " + ", ".join(f"`{lbl}`" for lbl in others) + "."
        )
    lines += [
        f"- `{label}`: not converged at the reference cell, so not ranked"
        for label in sorted(missed)
    ]
    return "\n".join(lines)
