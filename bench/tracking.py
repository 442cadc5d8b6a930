"""Experiment tracking behind a thin interface: MLflow, or a null tracker (tests, `--no-track`).

MLflow is imported lazily (it is slow to import) and used through `MlflowClient`, never the
global fluent API, so several trackers can coexist in one process. Metrics are buffered by the
trainer's logging interval and sent with `log_batch`, so even a remote server over HTTP adds only
a few percent to a run. A run counts as done only once it is terminated FINISHED with a `status`
tag; anything else (RUNNING after a kill, FAILED, KILLED) is redone on resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.errors import ConfigError, safe_url
from bench.system import (
    DB_SCHEMES,
    check_database,
    check_uri_form,
    owner_alive,
    sqlite_path,
    worker_id,
)

DEFAULT_STORE = Path("runs")  # relative to the working directory: the project folder under make


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set, else an SQLite store in ./runs."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"


@dataclass
class RunRecord:
    """One tracked run as readers see it: what the report and the resume logic use."""

    run_id: str
    name: str
    status: str  # the tracker's run status: RUNNING, FINISHED, FAILED, KILLED
    start_time: int  # ms since the epoch
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the last value of each


class TrackerReader(Protocol):
    """The read side of a tracker. Reports use only this (a fake implements it in tests)."""

    uri: str

    def runs(self, experiment: str, finished_only: bool = False,
             query: str = "") -> list[RunRecord]: ...  # fmt: skip

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]: ...

    def download_artifact(self, run_id: str, path: str, folder: Path) -> Path | None: ...


class NullRun:
    """Accepts everything, keeps nothing."""

    run_id = None

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def log_artifacts(self, folder: Path) -> None:
        pass

    def log_params(self, params: dict[str, str]) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass

    def log_dataset(self, name: str, description: dict[str, Any]) -> None:
        pass


class NullTracker:
    uri = "none"

    def runs(self, experiment: str, finished_only: bool = False,
             query: str = "") -> list[RunRecord]:  # fmt: skip
        return []

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return []

    def download_artifact(self, run_id: str, path: str, folder: Path) -> Path | None:
        return None

    def done_keys(self, experiment: str) -> set[tuple[str, int]]:
        return set()

    def busy_keys(self, experiment: str) -> set[tuple[str, int]]:
        return set()

    def reconcile(self, experiment: str) -> list[str]:
        return []

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        return None

    def parent_run(self, experiment: str, name: str, tags: dict[str, Any]) -> NullRun:
        return NullRun()

    def finish(self, run: NullRun) -> None:
        pass

    @contextmanager
    def start_run(
        self, experiment: str, name: str, tags: dict[str, Any], params: dict[str, str],
        parent: Any = None,
    ):  # fmt: skip
        yield NullRun()


class MlflowRun:
    """One run's handle. With a journal (remote stores), a call that fails sends the run
    offline: it goes on recording to local disk (`bench.offline`) instead of failing."""

    def __init__(self, client: Any, run_id: str | None, journal=None):
        self.client, self.run_id, self.journal = client, run_id, journal

    def _send(self, record: dict[str, Any], call) -> bool:
        """Record, then call the store unless offline; whether the store got it."""
        if self.journal is None:
            call()
            return True
        self.journal.add(record)
        if self.journal.offline:
            return False
        try:
            call()
            return True
        except Exception as e:  # after MLflow's own bounded retries
            self.journal.go_offline(e)
            return False

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        ts = _now_ms()
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if _loggable(v)]

        def call() -> None:
            for i in range(0, len(items), 1000):  # MLflow's batch limit
                self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

        data = {m.key: m.value for m in items}
        self._send({"op": "metrics", "step": step, "data": data}, call)

    def log_artifacts(self, folder: Path) -> None:
        sent = self._send({"op": "artifacts"},
                          lambda: self.client.log_artifacts(self.run_id, str(folder)))  # fmt: skip
        if not sent:
            self.journal.keep_artifacts(folder)

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]

        def call() -> None:
            for i in range(0, len(items), 100):  # MLflow's batch limit
                self.client.log_batch(self.run_id, params=items[i : i + 100])

        self._send({"op": "params", "data": {p.key: p.value for p in items}}, call)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        data = {k: str(v) for k, v in tags.items()}
        self._send({"op": "tags", "data": data}, lambda: self.client.log_batch(
            self.run_id, tags=[RunTag(k, v) for k, v in data.items()]))  # fmt: skip

    def log_dataset(self, name: str, description: dict[str, Any]) -> None:
        """The run's data set as an MLflow input, so the UI's Dataset column can filter and
        group runs by it; the digest fingerprints what was actually loaded."""
        import hashlib

        from mlflow.entities import Dataset, DatasetInput, InputTag

        text = json.dumps(description, sort_keys=True, default=str)
        digest = str(description.get("digest") or hashlib.sha256(text.encode()).hexdigest()[:10])
        dataset = Dataset(name=name, digest=digest, source_type="code", source=name,
                          profile=text)  # fmt: skip
        tags = [InputTag("mlflow.data.context", "training")]
        inputs = [DatasetInput(dataset, tags)]
        self._send(
            {"op": "dataset", "name": name, "data": description},
            lambda: _once_more_on_race(lambda: self.client.log_inputs(self.run_id, inputs)),
        )

    def terminate(self, status: str) -> None:
        self._send({"op": "end", "status": status},
                   lambda: self.client.set_terminated(self.run_id, status))  # fmt: skip


class MlflowTracker:
    """MLflow at `uri`: an SQLite file, a database URL, or a (remote) `mlflow server`."""

    def __init__(self, uri: str | None = None):
        self.uri = uri or default_tracking_uri()
        check_reachable(self.uri)
        quiet_mlflow()
        if self.uri.startswith("sqlite:///"):
            from bench.stores import ensure_mlflow_store

            ensure_mlflow_store(sqlite_path(self.uri))
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        self._experiments: dict[str, str] = {}
        # A store not on this machine may go away mid-run: its runs keep a journal (offline.py).
        self.remote = not self.uri.startswith("sqlite:")
        self.offline = False

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        if name not in self._experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                if not create:
                    return None
                # Our runs are model development, not GenAI traces: the UI then opens on the
                # runs table instead of an empty "Overview" of traces and tokens.
                exp_id = self._create_experiment(name)
            else:
                exp_id = exp.experiment_id
            self._experiments[name] = exp_id
        return self._experiments[name]

    def _create_experiment(self, name: str) -> str:
        """Create experiment `name`; another process that created it first (two invocations
        started at once) is no error: its experiment is the one."""
        try:
            return self.client.create_experiment(
                name, artifact_location=self._artifacts(name),
                tags={"mlflow.experimentKind": "custom_model_development"},
            )  # fmt: skip
        except Exception as e:
            exp = self.client.get_experiment_by_name(name)
            if exp is None or not ("already exists" in str(e) or "UNIQUE" in str(e)):
                raise
            return exp.experiment_id

    def _artifacts(self, experiment: str) -> str | None:
        """Artifacts of a local SQLite store live beside it; a server decides its own."""
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///"))
            return (db.parent / "artifacts" / experiment).resolve().as_uri()
        return None

    def runs(self, experiment: str, finished_only: bool = False,
             query: str = "") -> list[RunRecord]:  # fmt: skip
        """The experiment's runs (all pages), optionally filtered by an MLflow search query."""
        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            return []
        if finished_only:
            query = " and ".join(q for q in ("attributes.status = 'FINISHED'", query) if q)
        out, token = [], None
        while True:
            page = self.client.search_runs([exp_id], query, max_results=1000, page_token=token)
            out.extend(_record(r) for r in page)
            token = page.token
            if not token:
                return out

    def done_keys(self, experiment: str) -> set[tuple[str, int]]:
        """(config hash, seed) of every run that finished (or diverged, which is a result),
        in the store or kept offline waiting for `upload`."""
        from bench.offline import done_keys as offline_keys

        return offline_keys(experiment) | self.stored_keys(experiment)

    def stored_keys(self, experiment: str) -> set[tuple[str, int]]:
        """(config hash, seed) of the runs the store itself holds finished or diverged."""
        return {
            (r.tags["config_hash"], int(r.tags["seed"]))
            for r in self.runs(experiment, finished_only=True)
            if r.tags.get("status") in ("finished", "diverged") and "config_hash" in r.tags
        }

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def download_artifact(self, run_id: str, path: str, folder: Path) -> Path | None:
        """A run's artifact copied into `folder`, or None when it has none by that name."""
        try:
            return Path(self.client.download_artifacts(run_id, path, str(folder)))
        except Exception:  # no such artifact (e.g. a run of an older version)
            return None

    def runs_table_url(self, experiment: str, ui: str | None = None) -> str:
        """The UI page that lists the experiment's runs (not the GenAI overview): on the server
        itself for a remote store, else on `make ui`'s address."""
        if ui is None:
            remote = self.uri.startswith(("http://", "https://"))
            ui = safe_url(self.uri).rstrip("/") if remote else "http://127.0.0.1:5000"
        exp_id = self.experiment_id(experiment, create=False)
        return f"{ui}/#/experiments/{exp_id}/runs" if exp_id else ui

    def delete_incomplete(self, experiment: str, key: tuple[str, int]) -> None:
        """Remove leftovers of a killed or failed attempt at `key`, so a redo is no duplicate.
        A RUNNING run is a leftover only when its owner is gone (`owner_alive`, the rule of
        `reconcile`): while it lives, this raises RunInProgress and deletes nothing, so two
        invocations on overlapping configs never delete each other's live runs."""
        runs = self._key_runs(experiment, key)
        live = [r for r in runs if r.status == "RUNNING" and owner_alive(r.tags.get("worker", ""),
                                                                        r.start_time)]  # fmt: skip
        if live:
            raise RunInProgress(experiment, key, live[0].name, live[0].tags.get("worker", "?"))
        for r in runs:
            if not _done(r):
                self.client.delete_run(r.run_id)

    def _key_runs(self, experiment: str, key: tuple[str, int]) -> list[RunRecord]:
        # Filtered by the store, not by reading every run of the experiment at each start.
        return self.runs(experiment, query=f"tags.config_hash = '{key[0]}' and "
                                           f"tags.seed = '{key[1]}'")  # fmt: skip

    def busy_keys(self, experiment: str) -> set[tuple[str, int]]:
        """(config hash, seed) of the runs a live process is recording now (`owner_alive`): a
        suite leaves them to that process instead of starting them again."""
        return {
            (r.tags["config_hash"], int(r.tags["seed"]))
            for r in self.runs(experiment, query="attributes.status = 'RUNNING'")
            if "config_hash" in r.tags and owner_alive(r.tags.get("worker", ""), r.start_time)
        }

    def reconcile(self, experiment: str) -> list[str]:
        """Mark KILLED the runs left RUNNING by a process of this machine that no longer exists
        (a SIGKILL, a dead sweep worker); runs of other machines are left to their owners."""
        host, ended = socket.gethostname(), []
        for r in self.runs(experiment, query="attributes.status = 'RUNNING'"):
            worker = r.tags.get("worker", "")
            if worker.rpartition(":")[0] == host and not owner_alive(worker, r.start_time):
                self.client.set_tag(r.run_id, "reconciled", "its process died; marked KILLED")
                self.client.set_terminated(r.run_id, "KILLED")
                ended.append(r.run_id)
        return ended

    def parent_run(self, experiment: str, name: str, tags: dict[str, Any]) -> MlflowRun:
        """The run named `name` carrying `tags` (e.g. one per Optuna study), found again on
        resume, created otherwise; its children are nested under it in the UI."""
        wanted = {k: str(v) for k, v in tags.items()}
        for r in self.runs(experiment):
            if r.name == name and all(r.tags.get(k) == v for k, v in wanted.items()):
                return MlflowRun(self.client, r.run_id)
        exp_id = self.experiment_id(experiment)
        run = self.client.create_run(exp_id, tags=wanted, run_name=name)
        return MlflowRun(self.client, run.info.run_id)

    def finish(self, run: MlflowRun) -> None:
        self.client.set_terminated(run.run_id, "FINISHED")

    def handle(self, run_id: str) -> MlflowRun:
        """A direct handle on an existing run (no journal: calls fail loudly)."""
        return MlflowRun(self.client, run_id)

    @contextmanager
    def start_run(
        self, experiment: str, name: str, tags: dict[str, Any], params: dict[str, str],
        parent: MlflowRun | None = None,
    ):  # fmt: skip
        """A run that ends FINISHED when the block completes, KILLED on Ctrl-C, FAILED on error."""

        from bench.offline import Journal

        tags = {k: str(v) for k, v in tags.items()} | {"worker": worker_id()}
        if parent is not None and parent.run_id is not None:
            tags["mlflow.parentRunId"] = parent.run_id
        journal = None
        if self.remote:
            journal = Journal({"experiment": experiment, "name": name, "uri": self.uri,
                               "tags": tags, "run_id": None})  # fmt: skip
        run_id = None
        try:
            if self.offline:
                raise ConnectionError("the store failed earlier in this process")
            run_id = self._create(experiment, name, tags)
        except RunInProgress:
            raise  # nothing was created: the caller leaves this run to its owner
        except Exception as e:
            if journal is None:
                raise
            journal.go_offline(e)
        if journal is not None:
            journal.header["run_id"] = run_id
        handle = MlflowRun(self.client, run_id, journal)
        try:  # from the run's creation on: a stop while its params are sent ends it too
            handle.log_params(params)
            yield handle
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM, a worker told to stop
            handle.terminate("KILLED")
            raise
        except BaseException:
            handle.terminate("FAILED")
            raise
        handle.terminate("FINISHED")
        if journal is not None and journal.offline:
            self.offline = True  # later runs of this process go straight to disk
            print(f"tracking: {name} kept in {journal.folder}; send it with `python -m bench "
                  f"upload --tracking-uri {safe_url(self.uri)}`", file=sys.stderr)  # fmt: skip

    def _create(self, experiment: str, name: str, tags: dict[str, str]) -> str:
        """A new run; one of a (config, seed) replaces that key's leftovers, under a lock on a
        local store so that two processes do not both find the key free and both create it."""
        exp_id = self.experiment_id(experiment)
        if "config_hash" not in tags:
            return self.client.create_run(exp_id, tags=tags, run_name=name).info.run_id
        lock = contextlib.nullcontext()
        if self.uri.startswith("sqlite:///"):
            from bench.stores import locked

            lock = locked(sqlite_path(self.uri))
        with lock:
            self.delete_incomplete(experiment, (tags["config_hash"], int(tags["seed"])))
            return self.client.create_run(exp_id, tags=tags, run_name=name).info.run_id


class RunInProgress(ConfigError):
    """A (config, seed) that a live process is recording now: starting it again would record
    it twice, and deleting that run would break its process."""

    def __init__(self, experiment: str, key: tuple[str, int], name: str, worker: str):
        self.experiment, self.key, self.name, self.worker = experiment, key, name, worker
        super().__init__(
            f"run {name} (config {key[0]}, seed {key[1]}) of experiment {experiment!r} is being "
            f"recorded by process {worker}; wait for it to end, or give another --experiment"
        )

    def __reduce__(self):  # raised in a worker, raised again in its parent
        return RunInProgress, (self.experiment, self.key, self.name, self.worker)


def _done(r: RunRecord) -> bool:
    """A result: ended FINISHED with its status tag (a diverged run is a result too)."""
    return r.status == "FINISHED" and r.tags.get("status") in ("finished", "diverged")


def _once_more_on_race(call) -> None:
    """MLflow creates a data set record on first use without a lock: two workers logging the
    same data set at once collide on its unique key; the second attempt finds the record."""
    try:
        call()
    except Exception as e:
        if "UNIQUE constraint" not in str(e) and "IntegrityError" not in str(e):
            raise
        call()


def _record(r: Any) -> RunRecord:
    info, data = r.info, r.data
    return RunRecord(info.run_id, info.run_name or "", info.status, info.start_time or 0,
                     dict(data.tags), dict(data.params), dict(data.metrics))  # fmt: skip


def check_reachable(uri: str) -> None:
    """Fail fast, with one line, on a tracking URI that cannot work (before any training)."""
    scheme = check_uri_form(uri)
    if scheme in DB_SCHEMES:
        check_database(uri, "tracking URI")
    elif uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as resp:
                if resp.status != 200:
                    raise OSError(f"HTTP {resp.status}")
        except (OSError, urllib.error.URLError) as e:
            raise ConfigError(
                f"tracking URI {safe_url(uri)!r} is unreachable ({_reason(e)})"
            ) from None


def quiet_mlflow() -> None:
    """MLflow's defaults for a batch job: nothing on stdout (it carries our JSON line), no
    store-migration chatter, no progress bars, bounded retries against a server (about 10 s in
    all before a call is given up, instead of minutes), and no usage telemetry: it calls out
    to the internet, and its session id, kept in os.environ and deleted from another thread,
    once failed a request with KeyError('_MLFLOW_TELEMETRY_SESSION_ID') (a CI run's upload)."""
    env = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # fmt: skip
    for key, value in env.items():
        os.environ.setdefault(key, value)
    import mlflow  # noqa: F401  (configures its loggers on import: set their level after)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or e
    return str(reason).strip() or type(e).__name__


def _loggable(v: Any) -> bool:
    """Numbers, NaN included (MLflow stores it); not booleans or None."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
