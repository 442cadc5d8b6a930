"""What a study leaves in its MLflow parent run: search ranges, best parameters, and plots
(optimization history, parameter importance, objective against each searched parameter)."""

from __future__ import annotations

import json

from bench.methods import method_registry, search_space
from bench.plots.tuning import study_plots
from bench.system import artifact_folder


def study_tags(cfg) -> dict[str, str]:
    tags = {"kind": "study", "study": cfg.study_name, "dataset": cfg.dataset,
            "method": cfg.method, "suite": cfg.suite}  # fmt: skip
    if cfg.sampler_seed:  # only then: a parent run recorded before the tag still matches
        tags["sampler_seed"] = str(cfg.sampler_seed)
    return tags


def log_study_artifacts(cfg, study, tracker, parent, best: dict[str, float]) -> None:
    if parent.run_id is None:  # the null tracker keeps nothing
        return
    space = search_space(method_registry.get(cfg.method))
    # Tags, not params: a re-run with a larger budget may change them, and MLflow params are
    # immutable.
    ranges = {f"space.{k}": f"{'log' if s.log else 'uniform'}[{s.low}, {s.high}]"
              for k, s in space.items()}  # fmt: skip
    parent.set_tags(
        ranges | {f"best.{k}": repr(v) for k, v in best.items()}
        | {"trials": cfg.trials, "tuning_seeds": ",".join(map(str, cfg.tuning_seeds)),
           "pruner": cfg.pruner, "multi_objective": cfg.multi_objective}
    )  # fmt: skip
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if completed and not cfg.multi_objective:
        sign = 1 if study.direction.name == "MINIMIZE" else -1
        parent.log_metrics(0, {"best_value": min(sign * t.value for t in completed) * sign})
    with artifact_folder() as folder:
        (folder / "best_params.json").write_text(json.dumps(best, indent=2))
        if completed and not cfg.multi_objective:
            study_plots(folder, study, space, completed)
        parent.log_artifacts(folder)
