"""A suite resolved once into a plan: every (data set, cell, method) resolved into a `RunConfig`
exactly once, the seeds sharing that resolution, the whole validated before anything is created.

A cell is one point of the suite's axes (any training or model field a user sets, mapped to a
list of values): the cross product of the axes, or the cells the suite lists. The first cell is
the reference: what the main tables show and where sweeps tune. The executor, the tracker and
the report read the plan (each entry carries its cell) and never resolve names again.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

from bench.config import ModelSpec, RunConfig, TrainConfig
from bench.errors import ConfigError, NoOpMethod
from bench.params import cli_fields, to_text, typed_config, typed_values
from bench.resources import fitting_population
from bench.run import population_key, resolve, with_params
from bench.workers import choose_population

AXIS_OWNERS = {"train": TrainConfig, "model": ModelSpec}
RECIPE_POLICIES = ("axis", "recipe")


def axis_owner(name: str, where: str) -> str:
    """`train` or `model`: the config an axis field belongs to; a one-line error otherwise."""
    for owner, cls in AXIS_OWNERS.items():
        if name in cli_fields(cls):
            return owner
    known = [f for cls in AXIS_OWNERS.values() for f in cli_fields(cls)]
    raise ConfigError(f"{where}: unknown axis field {name!r}; allowed: {', '.join(known)}")


@dataclass(frozen=True)
class Cell:
    """One point of the axes: ((field, value), ...) in the axes' order."""

    coords: tuple[tuple[str, Any], ...] = ()
    reference: bool = True

    @property
    def label(self) -> str:
        return ",".join(f"{k}={to_text(v)}" for k, v in self.coords) or "reference"

    def options(self, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """{"train": {...}, "model": {...}}: the cell's values, less the fields in `skip`."""
        out: dict[str, dict[str, Any]] = {"train": {}, "model": {}}
        for k, v in self.coords:
            if k not in skip:
                out[axis_owner(k, "cell")][k] = v
        return out

    def tags(self) -> dict[str, str]:
        """MLflow tags: `cell`, `reference_cell` and one `axis.<field>` per coordinate."""
        tags = {"cell": self.label, "reference_cell": str(self.reference).lower()}
        return tags | {f"axis.{k}": to_text(v) for k, v in self.coords}


def make_cells(axes: dict[str, Any], cells: Any, where: str) -> tuple[Cell, ...]:
    """The cells of `axes` ({field: [values]}): their cross product, or the listed `cells`
    ([{field: value}, ...], each over the axes' fields); every value typed and range-checked."""
    typed = {name: _axis_values(name, values, where) for name, values in axes.items()}
    if cells is None:
        points = [
            dict(zip(typed, combo, strict=True)) for combo in itertools.product(*typed.values())
        ]
    else:
        if not isinstance(cells, list | tuple) or not cells:
            raise ConfigError(f"{where}: cells must be a non-empty list of tables, not {cells!r}")
        points = [_explicit_cell(c, where) for c in cells]
    seen = set()
    for p in points:
        key = tuple(sorted((k, to_text(v)) for k, v in p.items()))
        if key in seen:
            raise ConfigError(f"{where}: cell {_text(p)} is given twice; give each cell once")
        seen.add(key)
    return tuple(Cell(tuple(p.items()), i == 0) for i, p in enumerate(points or [{}]))


def _axis_values(name: str, values: Any, where: str) -> tuple:
    owner = axis_owner(name, where)
    if not isinstance(values, list | tuple) or not values:
        raise ConfigError(f"{where}: axis {name!r} must be a non-empty list of values, not "
                          f"{values!r}")  # fmt: skip
    cls = AXIS_OWNERS[owner]
    out = []
    for v in values:
        try:
            typed = typed_values(cls, {name: v}, f"axis {name}")[name]
            typed_config(cls, {name: typed} | _companions(cls, name, typed), f"axis {name}")
        except TypeError:
            raise ConfigError(f"{where}: axis {name}={v!r} is not a valid value") from None
        except ConfigError as e:
            raise ConfigError(f"{where}: axis {name}: {str(e).split(': ', 1)[-1]}") from None
        out.append(typed)
    if len({to_text(v) for v in out}) < len(out):
        raise ConfigError(f"{where}: axis {name!r} lists a value twice ({values!r})")
    return tuple(out)


def _companions(cls, name: str, value: Any) -> dict[str, Any]:
    """Values another field must take for `value` to be checked alone (a DCGAN size needs the
    dcgan kind): only the field's own range is checked here; the cell's runs check the rest."""
    return {"kind": "dcgan"} if cls is ModelSpec and name == "image_size" and value else {}


def _explicit_cell(cell: Any, where: str) -> dict[str, Any]:
    if not isinstance(cell, dict) or not cell:
        raise ConfigError(f"{where}: a cell must be a non-empty table of axis values, not {cell!r}")
    return {name: _axis_values(name, [value], where)[0] for name, value in cell.items()}


def _text(point: dict) -> str:
    return "{" + ", ".join(f"{k} = {to_text(v)}" for k, v in point.items()) + "}"


@dataclass(frozen=True)
class Entry:
    """One run of the plan: its resolved config, its method label, its cell."""

    config: RunConfig
    label: str
    cell: Cell
    recipe_wins: tuple[str, ...] = ()  # axis fields whose value the method's recipe kept
    seed_set: str = "main"  # or "replication": the suite's second, disjoint seed set

    def tags(self) -> dict[str, str]:
        extra = {"recipe_wins": ",".join(self.recipe_wins)} if self.recipe_wins else {}
        return self.cell.tags() | extra | {"seed_set": self.seed_set}


@dataclass
class Plan:
    """Every run of a suite, resolved and validated; what was left out, and why."""

    name: str
    entries: list[Entry]
    left_out: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def reference(self, dataset: str, method: str) -> Entry | None:
        """The first entry of a method at its defaults (the row labelled by its bare name) at
        the reference cell of a data set."""
        return next((e for e in self.entries if e.cell.reference and e.config.dataset ==
                     dataset and e.label == method), None)  # fmt: skip

    def stress_configs(self, dataset: str, method: str) -> tuple:
        """The method's configs at its defaults in every other cell that differs from the
        reference in member fields only (one per cell): a tuning objective's other cells."""
        ref = self.reference(dataset, method)
        if ref is None:
            return ()
        key, out = population_key(ref.config), {}
        for e in self.entries:
            if (e.config.dataset == dataset and e.label == method and not e.cell.reference
                    and population_key(e.config) == key):  # fmt: skip
                out.setdefault(e.cell.label, e.config)
        return tuple(out.values())

    def with_tuned(self, tuned: dict[tuple[str, str], dict[str, Any]]) -> Plan:
        """The plan with a second row for each tuned method: the parameters its sweep chose,
        labelled `<method> (tuned)`, set without resolving again. The method's row at its
        published default stays (a tuned value is never a replacement for it); a sweep that
        chose the default adds no row."""
        out = []
        for e in self.entries:
            out.append(e)
            params = tuned.get((e.config.dataset, e.label))  # rows given values stay as given
            cfg = with_params(e.config, params) if params else e.config
            if cfg.methods != e.config.methods:
                out.append(dataclasses.replace(e, config=cfg, label=f"{e.label} {TUNED}"))
        return Plan(self.name, out, self.left_out)


TUNED = "(tuned)"  # the label suffix of a method's tuned row


def recipe_fields(spec) -> dict[str, Any]:
    """The training fields a method's recipe sets, with its values (loss, optimizer, ...)."""
    base = TrainConfig()
    after = spec.cls.recipe(spec.config, base)
    return {f.name: getattr(after, f.name) for f in dataclasses.fields(base)
            if getattr(after, f.name) != getattr(base, f.name)}  # fmt: skip


def recipe_conflicts(cell: Cell, spec, policy: str, where: str) -> tuple[str, ...]:
    """The cell's fields that the method's recipe would set otherwise: with policy `recipe`
    the recipe keeps them (returned, to leave out of the cell's options); with `axis` the axis
    value wins (nothing returned); with no policy, a one-line error."""
    kept = recipe_fields(spec)
    clash = [k for k, v in cell.coords if k in kept and to_text(kept[k]) != to_text(v)]
    if not clash or policy == "axis":
        return ()
    if policy == "recipe":
        return tuple(clash)
    k = clash[0]
    value = dict(cell.coords)[k]
    raise ConfigError(
        f"{where}: axis {k}={to_text(value)} would override {spec.name}'s recipe ({k}="
        f'{to_text(kept[k])}); say which wins: on_recipe_conflict = "axis" or "recipe"'
    )


def check_populations(entries: list[Entry], population: int | str, jobs: int) -> list[list]:
    """The entries packed into populations (`pack`); AMP with populations is refused here,
    before anything trains (one loss scaler would skip every member's step)."""
    chunks = pack(entries, population, jobs)
    for chunk in chunks:
        if len(chunk) > 1 and chunk[0].config.train.amp:
            raise ConfigError(
                f"amp=true cannot train populations (population={population}); use "
                "--population 1 or amp=false"
            )
    return chunks


def pack(entries: list[Entry], population: int | str, jobs: int) -> list[list[Entry]]:
    """Entries grouped into populations: runs that differ only in member fields (seed,
    learning rates, Adam's betas, method thresholds; bench.run.population_key) train together,
    at most K at a time, in chunks small enough to keep `jobs` workers busy."""
    groups: dict[tuple, list] = {}
    for e in entries:
        groups.setdefault(population_key(e.config), []).append(e)
    share = -(-len(entries) // max(1, jobs))  # ceil: every worker gets some
    chunks = []
    for group in groups.values():
        cfg = group[0].config
        k = min(choose_population(population, cfg.model.kind, cfg.device), share, len(group))
        k = fitting_population(cfg, max(1, k), population)
        chunks += [group[i : i + k] for i in range(0, len(group), k)]
    return chunks


def resolve_cell(suite, dataset: str, cell: Cell, method, device: str) -> Entry | str:
    """The entry of (dataset, cell, method) at the suite's first seed, or why the method is
    left out (it would change nothing in the data set's models)."""
    name, params = method
    where = f"suite {suite.name!r}"
    train, model = suite.settings(dataset)
    probe = resolve_method_spec(name, params)
    wins = recipe_conflicts(cell, probe, suite.on_recipe_conflict, where)
    opts = cell.options(skip=wins)
    try:
        cfg = resolve(dataset, [(name, params)], train | opts["train"], model | opts["model"],
                      suite.seeds[0], device, suite.data_root(dataset))  # fmt: skip
    except NoOpMethod as e:
        return str(e)
    except ConfigError as e:
        raise ConfigError(f"{where}, {dataset}, cell {cell.label}: {e}") from None
    return Entry(cfg, "", cell, wins)


def resolve_method_spec(name: str, params: dict[str, Any]):
    """The method's spec alone (its class and typed config), to read its recipe."""
    from bench.run import method_specs

    return method_specs([(name, params)])[0]


def build_plan(suite, device: str = "cpu") -> Plan:
    """Every (data set, cell, method) resolved once; each seed a copy of that resolution.
    Methods vary fastest, then seeds, then cells, so a partial suite covers every method."""
    entries, left_out = [], {}
    for dataset in suite.datasets:
        methods = suite.methods_for(dataset)
        for cell in suite.cells(dataset):
            resolved = {}
            for method, label in zip(methods, method_labels(methods), strict=True):
                got = resolve_cell(suite, dataset, cell, method, device)
                if isinstance(got, str):
                    left_out[(dataset, cell.label, method[0])] = got
                else:
                    resolved[label] = dataclasses.replace(got, label=label)
            for seed, seed_set in suite.all_seeds():
                for e in resolved.values():
                    cfg = dataclasses.replace(e.config, seed=seed)
                    entries.append(dataclasses.replace(e, config=cfg, seed_set=seed_set))
    return Plan(suite.name, entries, left_out)


def method_labels(methods) -> list[str]:
    """The method name, with the parameters it is given (a value other than its published
    default is another row, never to be read as the default)."""
    return [n + ("(" + ",".join(f"{k}={v}" for k, v in p.items()) + ")" if p else "")
            for n, p in methods]  # fmt: skip
