"""Store creation that a kill cannot corrupt: SIGKILL at many points of creating the MLflow and
Optuna SQLite stores, then start again: the store works, with no traceback."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bench.errors import ConfigError
from bench.stores import ensure_mlflow_store, ensure_optuna_store, mlflow_complete

CREATE = {
    "mlflow": "from bench.tracking import MlflowTracker as T; T('sqlite:///{db}')",
    "optuna": "from bench.sweep import make_storage as m; m('sqlite:///{db}')",
}


def _kill_during_creation(code: str, db, delay: float) -> bool:
    """Start a creator; once its temporary file (or the store) appears, wait `delay` and kill;
    whether it was still at work when killed."""
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if db.exists() or any(db.parent.glob(f".{db.name}.*.tmp")):
            break
        time.sleep(0.005)
    time.sleep(delay)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


@pytest.mark.parametrize("kind", ["mlflow", "optuna"])
def test_a_kill_at_any_point_of_store_creation_leaves_a_store_that_works(kind, tmp_path):
    from bench.sweep import make_storage
    from bench.tracking import MlflowTracker

    killed = 0
    for i, delay in enumerate((0.0, 0.05, 0.15, 0.4)):
        db = tmp_path / f"{kind}{i}.db"  # MLflow caches a store per URI: a new one each time
        killed += _kill_during_creation(CREATE[kind].format(db=db), db, delay)
        assert not db.exists() or os.path.getsize(db) > 0
        # Whatever the kill left, the next start gets a complete store and can record work.
        if kind == "mlflow":
            tracker = MlflowTracker(f"sqlite:///{db}")
            with tracker.start_run("e", "r", {}, {"p": "1"}):
                pass
            assert len(tracker.runs("e", finished_only=True)) == 1
        else:
            import optuna

            storage = make_storage(f"sqlite:///{db}")
            optuna.create_study(storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), 1)
    assert killed >= 3  # the kills hit creation, not an idle process
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_half_created_store_is_rebuilt_when_empty_and_refused_when_it_holds_runs(
    tmp_path, capsys
):
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as c:  # what a kill mid-migration left with older versions
        c.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        c.execute("INSERT INTO alembic_version VALUES ('abc')")
        c.execute("CREATE TABLE runs (run_uuid TEXT)")
    ensure_mlflow_store(db)
    assert mlflow_complete(db) and "rebuilding" in capsys.readouterr().err

    held = tmp_path / "held.db"
    with sqlite3.connect(held) as c:
        c.execute("CREATE TABLE runs (run_uuid TEXT)")
        c.execute("INSERT INTO runs VALUES ('r1')")
    with pytest.raises(ConfigError, match="holds 1 records"):
        ensure_mlflow_store(held)
    assert held.exists()  # never deleted

    other = tmp_path / "optuna.db"
    other.write_text("not a database")
    with pytest.raises(ConfigError, match="left alone"):
        ensure_optuna_store(other)


@pytest.mark.parametrize("kind", ["mlflow", "optuna"])
def test_a_busy_store_is_never_taken_for_a_half_created_one(kind, tmp_path, monkeypatch):
    """A transient error while checking a live store ("database is locked") propagates: it
    must not read as "incomplete and empty", which deleted the store under its writer."""
    import bench.stores as stores

    ensure = {"mlflow": ensure_mlflow_store, "optuna": ensure_optuna_store}[kind]
    db = tmp_path / "store.db"
    ensure(db)
    before = db.stat().st_ino

    def busy(path, sql):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(stores, "query", busy)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        ensure(db)
    assert db.exists() and db.stat().st_ino == before


KILLED_WRITER = """
import os, signal, sqlite3
db = sqlite3.connect({db!r})
db.execute("create table kept(x)")
db.execute("insert into kept values (1)")
db.commit()
db.execute("PRAGMA cache_size=1")  # spill the open transaction to the file: a hot journal
db.execute("begin")
for i in range(20000):
    db.execute("insert into kept values (?)", (i,))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_store_whose_writer_was_killed_mid_transaction_is_kept(tmp_path):
    """A kill inside a write leaves a hot journal; checking the store rolls it back and keeps
    everything committed (it was deleted as "half-created" when checked read-only)."""
    db = tmp_path / "optuna.db"
    ensure_optuna_store(db)
    subprocess.run([sys.executable, "-c", KILLED_WRITER.format(db=str(db))], check=False)
    assert db.with_name("optuna.db-journal").exists()
    ensure_optuna_store(db)
    assert sqlite3.connect(db).execute("select count(*) from kept").fetchone() == (1,)
