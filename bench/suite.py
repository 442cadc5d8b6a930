"""Suites: datasets x methods x seeds, run resumably and recorded in one MLflow experiment.

A suite is a Python preset (`quick`, `full`) or a TOML file with the same fields:

    name = "mine"
    datasets = ["ring8"]
    seeds = [0, 1, 2]
    methods = [["none", {}], ["norm_clip", {max_norm = "1.0"}]]
    [train]
    steps = 1000
    [model]
    hidden = 64

Re-running a suite skips every (config hash, seed) already finished in MLflow and redoes only the
missing, failed or killed ones; interrupted work never loses a finished run nor duplicates one.
"""

from __future__ import annotations

import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.config import RunConfig
from bench.errors import ConfigError
from bench.methods import method_registry
from bench.record import config_hash, run_tracked
from bench.run import resolve

ALL_METHODS = (
    ("none", {}),
    ("value_clip", {}),
    ("norm_clip", {}),
    ("agc", {}),
    ("autoclip", {}),
    ("zclip", {}),
    ("weight_clip", {}),
    ("layer_norm", {}),
    ("spectral_norm", {}),
    ("r1", {}),
    ("wgan_gp", {}),
)


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[str, ...]
    methods: tuple[tuple[str, dict[str, str]], ...]
    seeds: tuple[int, ...]
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def entries(self, device: str = "cpu") -> list[tuple[RunConfig, str]]:
        """Every (resolved config, label) of the suite, validated; seeds vary fastest within a
        dataset so that a partial suite already covers every method."""
        labels = _labels(self.methods)
        out = []
        for dataset in self.datasets:
            for seed in self.seeds:
                for (name, params), label in zip(self.methods, labels, strict=True):
                    cfg = resolve(dataset, [(name, params)], self.train, self.model, seed, device)
                    out.append((cfg, label))
        return out


def _labels(methods) -> list[str]:
    """The method name, with its parameters when the same method appears more than once."""
    names = [n for n, _ in methods]
    return [
        n if names.count(n) == 1 else n + "(" + ",".join(f"{k}={v}" for k, v in p.items()) + ")"
        for n, p in methods
    ]


PRESETS = {
    # ~15 minutes on a 2-core CPU: both mixtures, every method with its defaults, 3 seeds.
    "quick": Suite(
        "quick", ("ring8", "grid25"), ALL_METHODS, (0, 1, 2),
        train={"steps": 1200, "eval_every": 300, "log_every": 100},
    ),
    # For a GPU: 10 seeds, longer training.
    "full": Suite(
        "full", ("ring8", "grid25"), ALL_METHODS, tuple(range(10)),
        train={"steps": 20000, "eval_every": 1000, "log_every": 100},
    ),
    # Seconds: for tests and smoke checks.
    "micro": Suite(
        "micro", ("ring8",), (("none", {}), ("norm_clip", {})), (0, 1),
        train={"steps": 20, "batch_size": 32, "eval_every": 10, "log_every": 5,
               "eval_samples": 200},
        model={"hidden": 16},
    ),
}  # fmt: skip


def load_suite(name_or_path: str) -> Suite:
    """A preset by name, or a TOML file; errors name the bad value."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if not path.suffix == ".toml":
        raise ConfigError(
            f"unknown suite {name_or_path!r}; use one of: {', '.join(PRESETS)} or a .toml file"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"suite file {str(path)!r} cannot be read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"suite file {str(path)!r} is not valid TOML ({e})") from None
    unknown = set(raw) - {"name", "datasets", "methods", "seeds", "train", "model"}
    if unknown:
        raise ConfigError(f"suite file {str(path)!r}: unknown keys {sorted(unknown)}")
    methods = tuple(_method_entry(m) for m in raw.get("methods", [["none", {}]]))
    return Suite(
        name=str(raw.get("name", path.stem)),
        datasets=tuple(raw.get("datasets", ["ring8"])),
        methods=methods,
        seeds=tuple(int(s) for s in raw.get("seeds", [0])),
        train=dict(raw.get("train", {})),
        model=dict(raw.get("model", {})),
    )


def _method_entry(item: Any) -> tuple[str, dict[str, str]]:
    if isinstance(item, str):
        item = [item, {}]
    name, params = item
    method_registry.get(name)
    return name, {k: str(v) for k, v in params.items()}


def run_suite(suite: Suite, tracker, experiment: str, device: str, progress: bool = True) -> dict:
    """Run every entry not yet done; returns counts (total, skipped, finished, diverged)."""
    entries = suite.entries(device)  # validates everything before anything runs
    done = tracker.done_keys(experiment)
    todo = [(c, lbl) for c, lbl in entries if (config_hash(c), c.seed) not in done]
    counts = {"total": len(entries), "skipped": len(entries) - len(todo), "finished": 0,
              "diverged": 0}  # fmt: skip
    bar = tqdm(
        total=len(entries), initial=counts["skipped"], desc=f"suite {suite.name}", unit="run",
        disable=not progress, file=sys.stderr, position=0,
    )  # fmt: skip
    t0 = time.perf_counter()
    for cfg, label in todo:
        bar.set_postfix_str(f"{cfg.dataset} {label} seed {cfg.seed}")
        result = run_tracked(cfg, tracker, experiment, suite=suite.name, label=label,
                             progress=progress)  # fmt: skip
        counts[result.status] += 1
        bar.update()
    bar.close()
    counts["wall_time_s"] = time.perf_counter() - t0
    return counts
