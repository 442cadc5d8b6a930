"""Assemble the markdown report of one experiment, figures in a folder beside it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.datasets import dataset_registry
from bench.errors import ConfigError, safe_url
from bench.methods import BASELINE
from bench.metrics.base import Metric, read_declarations
from bench.params import ROLES
from bench.plots.samples import save_method_samples
from bench.plots.training import curves, grad_norm_boxes
from bench.report.context import CONTEXT
from bench.report.frame import download_samples, metric_history, runs_frame
from bench.report.stability import REPLICATION, seed_set, stability_section
from bench.report.tables import (
    format_method_table,
    format_significance,
    label_order,
    method_table,
    significance_table,
)
from bench.report.tuning import tuning_section


def build_report(tracker, experiment: str, out: Path) -> Path:
    """Write `out` (markdown) and its figures in `out.with_suffix('')`/; return `out`. Reads
    the tracker only through its read interface (`bench.tracking.TrackerReader`)."""
    df = runs_frame(tracker, experiment)
    if df.empty:
        raise ConfigError(
            f"experiment {experiment!r} has no finished runs at {safe_url(tracker.uri)}"
        )
    fig_dir = out.with_suffix("")
    fig_dir.mkdir(parents=True, exist_ok=True)
    sections, banners = [], []
    for dataset in sorted(df.dataset.unique()):
        d = df[df.dataset == dataset]
        main = d[d.reference_cell & (seed_set(d) != REPLICATION)]
        text, banner = _dataset_section(tracker, main, dataset, fig_dir, experiment)
        study = stability_section(d, dataset, fig_dir, dataset_metrics(d))
        sections.append(text + (f"\n\n{study}" if study else ""))
        banners += [banner] if banner else []
    parts = [_header(df, experiment, tracker.uri), *banners, _protocol_card(df), *sections]
    parts.append(CONTEXT)
    out.write_text("\n\n".join(parts) + "\n")
    return out


def _header(df: pd.DataFrame, experiment: str, uri: str) -> str:
    n_div = int((df.status == "diverged").sum())
    return (
        f"# Benchmark report: `{experiment}`\n\n"
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `python -m bench report` "
        f"from MLflow experiment `{experiment}` ({_safe_uri(uri)}): {len(df)} runs, "
        f"{len(df) - n_div} finished, {n_div} diverged (diverged runs are kept and counted)."
    )


def _safe_uri(uri: str) -> str:
    return "local SQLite store" if uri.startswith("sqlite:") else f"`{safe_url(uri)}`"


def _protocol_card(df: pd.DataFrame) -> str:
    p0 = df.params.iloc[0]
    rows = []
    for dataset in sorted(df.dataset.unique()):
        d = df[df.dataset == dataset]
        rows += [
            (f"{dataset}: data", _dataset_text(d)),
            (f"{dataset}: model", _model_text(d)),
            (f"{dataset}: training", f"{_values(d, 'train.steps')} generator steps, batch "
                                     f"{_values(d, 'train.batch_size')}"),
            (f"{dataset}: evaluation", f"{_values(d, 'train.eval_samples')} samples every "
                                       f"{_values(d, 'train.eval_every')} steps, fixed noise"),
        ]  # fmt: skip
    rows += [
        ("seeds", ", ".join(str(s) for s in sorted(df.seed.unique()))),
        ("device", _values(df, "device") + f" ({p0.get('host.device_name', '?')})"),
        ("software", ", ".join(f"{k.removeprefix('version.')} {v}" for k, v in sorted(p0.items())
                               if k.startswith("version."))),
        ("git commit", _values(df, "git_commit")),
        ("runs started", f"{df.start_time.min():%Y-%m-%d %H:%M} to "
                         f"{df.start_time.max():%Y-%m-%d %H:%M} UTC"),
    ]  # fmt: skip
    card = pd.DataFrame(rows, columns=["protocol", "value"]).to_markdown(index=False)
    recipes = _recipes(df)
    declared = {m.name: m for p in df.params for m in read_declarations(p)}
    defs = "\n".join(f"- `{m.name}` ({'lower' if m.direction == 'min' else 'higher'} is "
                     f"better): {m.definition}" for m in declared.values())  # fmt: skip
    return f"## Protocol card\n\n{card}\n\nTraining recipes (per method):\n\n{recipes}\n\n" \
           f"Metrics, on the final samples:\n\n{defs}"  # fmt: skip


def _dataset_text(df: pd.DataFrame) -> str:
    """What the runs recorded about their data (`dataset.*` params), as they recorded it."""
    keys = sorted({k for p in df.params for k in p if k.startswith("dataset.")})
    return ", ".join(f"{k.removeprefix('dataset.')} {_values(df, k)}" for k in keys) or "?"


def _model_text(df: pd.DataFrame) -> str:
    """The networks as recorded (params `model.*`): kind and sizes, D's capacity included."""
    kind = _values(df, "model.kind")
    common = (f"z dim {_values(df, 'model.z_dim')}, D width x{_values(df, 'model.d_capacity')} "
              "of G's")  # fmt: skip
    if kind in ("mlp", "pacgan"):
        name = "MLP" if kind == "mlp" else "PacGAN MLP (batch-norm G, maxout D of 5 pieces)"
        depths = f"{_values(df, 'model.depth_g')} / D {_values(df, 'model.depth_d')}"
        return f"{name}: hidden {_values(df, 'model.hidden')}, depth G {depths}, {common}"
    if kind == "dirac":
        return "Dirac-GAN: G a single point theta, D(x) = psi * x (Mescheder et al. 2018)"
    size = _values(df, "model.image_size")
    return (f"{kind.upper()}: {size}x{size} px, {_values(df, 'model.channels')} channels, base "
            f"width {_values(df, 'model.hidden')}, {common}")  # fmt: skip


def _values(df: pd.DataFrame, key: str) -> str:
    vals = sorted({p.get(key, "?") for p in df.params})
    return ", ".join(vals)


OPTIMIZER_KEYS = {  # the settings each optimizer actually uses
    "adam": ("lr_g", "lr_d", "beta1", "beta2"),
    "rmsprop": ("lr_g", "lr_d"),
    "sgd": ("lr_g", "lr_d", "beta1"),  # beta1: Nesterov momentum
}


def _recipes(df: pd.DataFrame) -> str:
    rows = {}
    for label, p in zip(df.label, df.params, strict=True):
        opt = p.get("train.optimizer", "?")
        keys = OPTIMIZER_KEYS.get(opt, ("lr_g", "lr_d"))
        names = {"beta1": "momentum"} if opt == "sgd" else {}
        settings = ", ".join(f"{names.get(k, k)} {p.get('train.' + k, '?')}" for k in keys)
        key = (p.get("train.recipe", "?"), p.get("train.loss", "?"), opt, settings,
               p.get("train.n_critic", "?"))  # fmt: skip
        rows.setdefault(key, set()).add(label)
    table = [list(k) + [", ".join(sorted(v))] for k, v in rows.items()]
    cols = ["recipe", "loss", "optimizer", "its settings", "n_critic", "methods"]
    return pd.DataFrame(table, columns=cols).to_markdown(index=False)


def dataset_metrics(df: pd.DataFrame) -> list[Metric]:
    """The metrics the runs of one data set declared (their first run's declarations)."""
    declared = read_declarations(df.params.iloc[0])
    if not declared or sum(m.primary for m in declared) != 1:
        raise ConfigError("runs without metric declarations (recorded by an older version); "
                          "re-run them to report them")  # fmt: skip
    return declared


def _dataset_section(tracker, df, dataset, fig_dir: Path, experiment: str):
    """The section's markdown, and a banner for the report's first lines when the baseline
    misses the protocol's convergence gate (then no ranking is printed)."""
    declared = dataset_metrics(df)
    logged = {c.removeprefix("eval/") for c in df.columns if c.startswith("eval/")}
    metrics = [(m.name, m.direction) for m in declared if m.table and not m.success
               and m.name in logged]  # fmt: skip
    primary_metric = next(m for m in declared if m.primary)
    primary = primary_metric.name
    success = next((m.name for m in declared if m.success), None)
    worst = {m.name: m.worst for m in declared if not math.isnan(m.worst)}
    table = method_table(df, metrics, primary, success, worst)
    sig = significance_table(df, metrics)
    refs = reference_rows(df, dataset, declared)
    gate = convergence_gate(df, declared, refs)
    second = next((name for name, _ in metrics if name != primary), primary)
    figs = _figures(tracker, df, dataset, fig_dir, [primary, second])
    tuning = tuning_section(tracker, experiment, dataset, primary_metric.direction, fig_dir)
    rel = fig_dir.name
    images = "\n\n".join(f"![{title}]({rel}/{name})" for title, name in figs)
    known = dataset in dataset_registry.names()
    caveat = dataset_registry.get(dataset).caveat if known else ""
    text = (
        f"## {dataset}\n\n" + (f"> **Not converged.** {gate}\n\n" if gate else "")
        + (f"> {caveat}\n\n" if caveat else "")
        + _extractor_note(df, logged)
        + format_method_table(table, metrics, primary, success is not None, refs, not gate)
        + "\n\nCells: median [25th, 75th percentile] over seeds; **bold**: best in the column "
        "by its direction (only where the methods differ); `(n=...)`: runs with a finite value "
        "when fewer than all"
        + (f" (an undefined {', '.join(f'`{k}`' for k in worst)} counts as its worst value)"
           if worst else "")
        + "; `diverged` and `success` count every run, diverged ones as failures; "
        + (f"`rank`: by the median of `{primary}`; " if not gate else "no rank: the baseline "
           "has not converged; ")
        + ("*italic rows*: reference sample sets scored by the same metric code (the data "
           "itself, the finite-sample ceiling, and what noise and collapse score); "
           if refs else "")
        + "clip rate: fraction of updates whose gradient norm the method reduced; |g| pre: mean "
        "global gradient norm before the method acted.\n\n"
        f"### Against the baseline (`{BASELINE}`)\n\n{_against_baseline(df, sig, metrics)}\n\n"
        f"### Figures\n\n{images}" + (f"\n\n{tuning}" if tuning else "")
    )  # fmt: skip
    return text, (f"**{dataset}: not converged.** {gate}" if gate else None)


def convergence_gate(df: pd.DataFrame, declared: list[Metric], refs: dict | None = None):
    """Why the baseline misses the protocol's convergence gate, or None when it meets it. The
    gate is a metric's declared threshold (the mixtures' hq_fraction) or, for data without
    one, the reference rows: the baseline's median primary metric must lie closer to the
    `data` row than to the `uniform noise` row (images). None when neither applies."""
    gated = next((m for m in declared if m.gate is not None), None)
    refs = refs or {}
    if gated is None and not {"data", "uniform noise"} <= set(refs):
        return None
    base = df[df.method == BASELINE]
    if base.empty:
        return (f"There is no `{BASELINE}` run, so whether this protocol converges is unknown; "
                "the methods are not ranked.")  # fmt: skip
    metric = gated or next(m for m in declared if m.primary)
    values = base.get(f"eval/{metric.name}", pd.Series(math.nan, index=base.index))
    median = float(values.fillna(metric.worst).median())  # a NaN run counts as the worst
    advice = ("The methods are not ranked; train longer (or with a calibrated protocol) before "
              "drawing conclusions.")  # fmt: skip
    if gated is not None:
        if gated.passes(median):
            return None
        return (
            f"The baseline's median `{gated.name}` is {median:.3g}, short of this protocol's "
            f"gate {gated.gate:g}: the baseline is still in its early, diffuse phase, so "
            f"differences between methods say little about stability. {advice}"
        )
    real, noise = refs["data"].get(metric.name), refs["uniform noise"].get(metric.name)
    if real is None or noise is None or abs(median - real) < abs(median - noise):
        return None
    return (
        f"The baseline's median `{metric.name}` is {median:.3g}, no closer to the `data` row "
        f"({real:.3g}) than to the `uniform noise` row ({noise:.3g}): its samples are still "
        f"nearer noise than data, so differences between methods say little. {advice}"
    )


def reference_rows(df: pd.DataFrame, dataset: str, declared: list[Metric]):
    """{label: {metric: median over the data's reference draws}} for its reference sample sets
    (data, noise, collapse), at the runs' evaluation size and evaluation options, scored by the
    metric code the runs used; {} when it has none or its data cannot be loaded here."""
    from bench.metrics.base import evaluate
    from bench.run import from_flat, load_data

    if dataset not in dataset_registry.names():
        return {}
    try:  # the runs' own resolved config, read back from their params
        cfg = dataclasses.replace(from_flat(df.params.iloc[0]), device="cpu")
        data = load_data(cfg)
    except ConfigError as e:  # e.g. the image files are not on this machine
        print(f"report: no reference rows for {dataset} ({e})", file=sys.stderr)
        return {}
    n, cls = cfg.train.eval_samples, cfg.data_cls
    names = {m.name for m in declared}
    draws: dict[str, list[dict[str, float]]] = {}
    for seed in range(cls.reference_draws):
        for label, x in data.references(n, seed).items():
            out = evaluate(data, data.metrics, data.replay(x), n)
            draws.setdefault(label, []).append({k: v for k, v in out.items() if k in names})
    return {label: pd.DataFrame(rows).median().to_dict() for label, rows in draws.items()}


def _against_baseline(df: pd.DataFrame, sig: pd.DataFrame, metrics) -> str:
    if not (df.method == BASELINE).any():
        return (f"No `{BASELINE}` run in this experiment, so nothing is tested against the "
                f"baseline: add `{BASELINE}` to the suite to compare with it.")  # fmt: skip
    if sig.empty:
        return f"Only `{BASELINE}` ran in this cell: there is no other method to test against it."
    return (
        f"{format_significance(sig, metrics)}\n\n"
        "Two-sided Mann-Whitney U test per metric against `none`, p-values Holm-corrected over "
        "the methods in this table (**bold**: < 0.05); delta: Cliff's delta, P(method > none) - "
        f"P(method < none).{_power_note(df)}"
    )


def _extractor_note(df: pd.DataFrame, keys: set[str]) -> str:
    """Image data: which network produced the features, and how good the classifier is."""
    if "classifier_accuracy" not in keys:
        return ""
    inception = "fid" in keys
    acc = df["eval/classifier_accuracy"].median()
    what = "Inception-v3 (`fid` is a real FID)"
    if not inception:
        what = (
            "the base data set's CNN classifier: `fd_*` is a Frechet distance in its "
            "feature space, not an Inception FID; never compare it with published FIDs"
        )
    n = ", ".join(sorted({p.get("train.eval_samples", "?") for p in df.params}))
    return (
        f"Features: {what}. Classifier test accuracy {acc:.2%} (mode counts are only as good "
        f"as it). Generated samples per evaluation: {n}; real: the held-out test split.\n\n"
    )


def _power_note(df: pd.DataFrame) -> str:
    """Say so when the seed counts make p < 0.05 impossible (exact two-sided U test)."""
    counts = df.groupby("label").size()
    if BASELINE not in counts or len(counts) < 2:
        return ""
    n0, n1 = counts[BASELINE], counts.drop(BASELINE).max()
    smallest = 2 / math.comb(n0 + n1, n0)
    if smallest < 0.05:
        return ""
    return (
        f" With {n1} runs against {n0}, the smallest possible p is {smallest:.2g}: no difference "
        "can be significant here; read the deltas, and use more seeds (the `full` suite) for tests."
    )


def _figures(tracker, df, dataset, fig_dir: Path, shown: list[str]) -> list[tuple[str, str]]:
    order = label_order(df.label)
    out = []
    histories = {m: metric_history(tracker, df, f"eval/{m}") for m in dict.fromkeys(shown)}
    histories = {m: h for m, h in histories.items() if not h.empty}  # no empty panels
    if histories:
        name = f"curves_{dataset}.png"
        curves(fig_dir / name, histories, order)
        out.append((f"{dataset}: evaluation metrics over training", name))
    norms = {r: metric_history(tracker, df, f"grad/{r}/norm_pre") for r in sorted(ROLES)}
    norms = {r: h for r, h in norms.items() if not h.empty}
    if norms:
        name = f"grad_norms_{dataset}.png"
        grad_norm_boxes(fig_dir / name, norms, order)
        out.append((f"{dataset}: gradient norm distributions", name))
    samples = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in order:
            first = df[df.label == label].sort_values("seed").iloc[0]
            s = download_samples(tracker, first.run_id, Path(tmp) / first.run_id)
            if s is not None:
                samples[f"{label} (seed {first.seed})"] = s
    if samples:
        name = f"samples_{dataset}.png"
        save_method_samples(fig_dir / name, samples, _landmarks(df))
        out.append((f"{dataset}: final samples", name))
    return out


def _landmarks(df: pd.DataFrame):
    """Points to mark on 2-D sample plots (a mixture's means), from the data's own class."""
    name = df.dataset.iloc[0]
    return dataset_registry.get(name).landmarks() if name in dataset_registry else None
