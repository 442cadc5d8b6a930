"""Runs kept on local disk when a remote tracking server goes away, and their later upload.

Against a remote store every call a run makes (params, tags, metrics, dataset, artifacts, end)
is also kept in memory. When a call fails after MLflow's bounded retries, the run goes offline:
what it recorded so far, and everything after, is written to `runs/offline/<id>/journal.jsonl`
(artifacts beside it), training goes on, and the command finishes normally.
`python -m bench upload` replays each journal into the store as one complete run and deletes
the journal; the partial run the server kept (RUNNING, without artifacts) is deleted.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.errors import safe_url

OFFLINE_DIR = Path("runs/offline")
JOURNAL = "journal.jsonl"


class Journal:
    """Everything one run sent to the tracker, in order; on disk once the run is offline."""

    def __init__(self, header: dict[str, Any]):
        self.header, self.records = header, []
        self.folder: Path | None = None

    @property
    def offline(self) -> bool:
        return self.folder is not None

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.folder is not None:
            self._write([record])

    def go_offline(self, error: BaseException) -> None:
        if self.folder is not None:
            return
        self.folder = OFFLINE_DIR / f"{self.header['experiment']}.{uuid.uuid4().hex[:12]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write([{"op": "run", **self.header}, *self.records])
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        print(f"tracking: {safe_url(self.header['uri'])} failed ({reason}); recording "
              f"{self.header['name']} locally in {self.folder}", file=sys.stderr)  # fmt: skip

    def keep_artifacts(self, folder: Path) -> None:
        assert self.folder is not None
        shutil.copytree(folder, self.folder / "artifacts", dirs_exist_ok=True)

    def _write(self, records: list[dict[str, Any]]) -> None:
        assert self.folder is not None
        with open(self.folder / JOURNAL, "a") as f:
            for r in records:
                f.write(json.dumps(r, default=str) + "\n")
            f.flush()


def read(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = [json.loads(x) for x in (folder / JOURNAL).read_text().splitlines() if x.strip()]
    return lines[0], lines[1:]


def journals(experiment: str | None = None) -> list[Path]:
    found = sorted(p.parent for p in OFFLINE_DIR.glob(f"*/{JOURNAL}"))
    return [p for p in found if experiment is None or read(p)[0]["experiment"] == experiment]


def final_tags(header: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, str]:
    tags = dict(header.get("tags", {}))
    for r in records:
        if r["op"] == "tags":
            tags |= r["data"]
    return tags


def done_keys(experiment: str) -> set[tuple[str, int]]:
    """(config hash, seed) of runs that finished offline: a resumed suite does not redo them."""
    keys = set()
    for folder in journals(experiment):
        header, records = read(folder)
        tags = final_tags(header, records)
        ended = any(r["op"] == "end" and r["status"] == "FINISHED" for r in records)
        if ended and tags.get("status") in ("finished", "diverged") and "config_hash" in tags:
            keys.add((tags["config_hash"], int(tags["seed"])))
    return keys


def upload(tracker, folder: Path) -> str:
    """Replay one journal into `tracker` as a complete run; 'uploaded' or why it was skipped."""
    header, records = read(folder)
    client, experiment = tracker.client, header["experiment"]
    tags = final_tags(header, records)
    if "config_hash" in tags and (tags["config_hash"], int(tags["seed"])) in tracker.stored_keys(
        experiment
    ):
        shutil.rmtree(folder)
        return "skipped: the store already holds this run finished"
    if header.get("run_id"):  # the partial run the server kept when it went away
        with contextlib.suppress(Exception):  # already gone, or never reached the server
            client.delete_run(header["run_id"])
    start = {k: str(v) for k, v in header.get("tags", {}).items()}
    run = client.create_run(tracker.experiment_id(experiment), tags=start,
                            run_name=header["name"])  # fmt: skip
    handle = tracker.handle(run.info.run_id)
    status = "KILLED"  # a journal without an end: the process died while offline
    for r in records:
        op = r["op"]
        if op == "params":
            handle.log_params(r["data"])
        elif op == "tags":
            handle.set_tags(r["data"])
        elif op == "metrics":
            handle.log_metrics(r["step"], r["data"])
        elif op == "dataset":
            handle.log_dataset(r["name"], r["data"])
        elif op == "artifacts" and (folder / "artifacts").is_dir():
            handle.log_artifacts(folder / "artifacts")
        elif op == "end":
            status = r["status"]
    client.set_terminated(run.info.run_id, status)
    shutil.rmtree(folder)
    return "uploaded"
