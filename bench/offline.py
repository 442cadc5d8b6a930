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

from bench.errors import ConfigError, check_name, safe_url

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
    """A journal's header and records, checked whole (`check_journal`) before anything of it
    is used: a journal is a file anyone could have edited, and its names become paths."""
    path = folder / JOURNAL
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"offline journal {str(path)!r} cannot be read ({e})") from None
    lines = [x for x in text.splitlines() if x.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not text.endswith("\n"):
                break  # the last record, cut off by a kill while it was written: the rest holds
            raise ConfigError(f"offline journal {str(path)!r}: line {i + 1} is not JSON; "
                              "fix or remove that journal's folder") from None  # fmt: skip
    return check_journal(path, records)


def journals(experiment: str | None = None) -> list[Path]:
    """Journal folders (`<experiment>.<12 hex digits>`), of one experiment or all."""
    found = sorted(p.parent for p in OFFLINE_DIR.glob(f"*/{JOURNAL}"))
    return [p for p in found if experiment is None or p.name[:-13] == experiment]


RECORDS = {  # op -> {field: accepted types}; the header's op is "run"
    "run": {"experiment": str, "name": str, "uri": str, "tags": dict, "run_id": (str, type(None))},
    "params": {"data": dict},
    "tags": {"data": dict},
    "metrics": {"step": int, "data": dict},
    "dataset": {"name": str, "data": dict},
    "artifacts": {},
    "end": {"status": str},
}
END_STATES = ("FINISHED", "FAILED", "KILLED")


def check_journal(path: Path, records: list) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, records) of a journal whose every record has its declared fields and types,
    whose experiment is a safe name (it becomes an artifact folder: `../..` would write
    outside the store), whose store is a supported URI and whose artifacts hold no links (a
    link would send a file from elsewhere on this machine); one line naming the problem."""
    from bench.system import check_uri_form

    def bad(what: str) -> ConfigError:
        return ConfigError(f"offline journal {str(path)!r}: {what}; fix or remove that "
                           "journal's folder")  # fmt: skip

    if not records:
        raise bad("it is empty")
    for i, r in enumerate(records):
        _check_record(r, i == 0, bad)
    header = records[0]
    try:
        check_name("experiment", header["experiment"])
        check_uri_form(header["uri"], "its tracking URI")
    except ConfigError as e:
        raise bad(str(e)) from None
    if not all(isinstance(v, str) for d in _texts(records) for kv in d.items() for v in kv):
        raise bad("a tag or parameter is not text")
    if any(p.is_symlink() for p in (path.parent / "artifacts").rglob("*")):
        raise bad("its artifacts hold a symbolic link")
    return header, records[1:]


def _check_record(r: Any, first: bool, bad) -> None:
    op = r.get("op") if isinstance(r, dict) else None
    if (op == "run") != first or op not in RECORDS:
        raise bad(f"record {r!r:.80} is not a {'header' if first else 'record'}")
    for key, types in RECORDS[op].items():
        if not isinstance(r.get(key), types) or isinstance(r.get(key), bool):
            raise bad(f"its {op!r} record lacks a valid {key!r}")
    if op == "end" and r["status"] not in END_STATES:
        raise bad(f"end status {r['status']!r} is not one of {', '.join(END_STATES)}")
    if op == "metrics" and not all(isinstance(v, int | float) for v in r["data"].values()):
        raise bad(f"a metric at step {r['step']} is not a number")


def _texts(records: list) -> list[dict]:
    """The {text: text} maps of a journal: its header's tags, its params and tags records."""
    return [records[0]["tags"]] + [r["data"] for r in records[1:] if r["op"] in ("params", "tags")]


def final_tags(header: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, str]:
    tags = dict(header.get("tags", {}))
    for r in records:
        if r["op"] == "tags":
            tags |= r["data"]
    return tags


def done_keys(experiment: str) -> set[tuple[str, int]]:
    """(config hash, seed) of runs that finished offline: a resumed suite does not redo them
    (a journal that does not check out counts for nothing: its run is redone, and `upload`
    names what is wrong with it)."""
    keys = set()
    for folder in journals(experiment):
        try:
            header, records = read(folder)
        except ConfigError:
            continue
        tags = final_tags(header, records)
        ended = any(r["op"] == "end" and r["status"] == "FINISHED" for r in records)
        if ended and tags.get("status") in ("finished", "diverged") and "config_hash" in tags:
            with contextlib.suppress(KeyError, ValueError):  # no usable seed: not a key
                keys.add((tags["config_hash"], int(tags["seed"])))
    return keys


def upload(tracker, folder: Path, journal=None) -> str:
    """Replay one journal (`journal`: what `read(folder)` gave, already checked) into
    `tracker` as a complete run; 'uploaded' or why it was skipped."""
    header, records = journal or read(folder)
    client, experiment = tracker.client, header["experiment"]
    tags = final_tags(header, records)
    if _key(tags) is not None and _key(tags) in tracker.stored_keys(experiment):
        shutil.rmtree(folder)
        return "skipped: the store already holds this run finished"
    exp_id = tracker.experiment_id(experiment)
    _delete_partial(client, header, exp_id)
    start = {k: str(v) for k, v in header.get("tags", {}).items()}
    run = client.create_run(exp_id, tags=start, run_name=header["name"])
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


def _key(tags: dict[str, str]) -> tuple[str, int] | None:
    try:
        return tags["config_hash"], int(tags["seed"])
    except (KeyError, ValueError):
        return None


def _delete_partial(client, header: dict[str, Any], exp_id: str) -> None:
    """Delete the partial run the server kept when it went away: only that run, the one of
    this journal's experiment and name that never ended FINISHED (a journal names its run by
    id, and an id alone must not delete any run of the store)."""
    if not header.get("run_id"):
        return
    try:
        info = client.get_run(header["run_id"]).info
    except Exception:  # already gone, or it never reached the server
        return
    if (
        info.experiment_id == exp_id
        and info.run_name == header["name"]
        and (info.status != "FINISHED")
    ):
        client.delete_run(info.run_id)
