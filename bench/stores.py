"""Local SQLite stores (MLflow's runs/mlflow.db, Optuna's runs/optuna.db) that a kill cannot
corrupt.

MLflow and Optuna create their schema in many steps (create tables, then migrate them one
revision at a time); a process killed in between leaves a file that every later start rejects
("duplicate column name: step"). So a store is created under an exclusive file lock into a
temporary file beside it, completed there, and renamed into place: the final path holds either
nothing or a complete store. A file that is still incomplete (left by an older version, or
copied half-way) is rebuilt when it holds no work, and refused with one line when it does.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing, contextmanager
from pathlib import Path

from bench.errors import ConfigError


@contextmanager
def locked(path: Path):
    """An exclusive lock on `path` (its creation, a run's claim), shared by every process on
    this machine. The lock file is removed on release, so a command leaves none behind (not
    even one that failed); a waiter that wakes on a removed file takes the lock again."""
    lock = path.with_name(f".{path.name}.lock")
    while True:
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if not _same_file(f, lock):
                continue  # the holder removed that file while we waited on it: lock the new one
            try:
                yield
            finally:
                lock.unlink(missing_ok=True)  # before unlocking: a waiter sees it was removed
                fcntl.flock(f, fcntl.LOCK_UN)
            return


def _same_file(f, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_sqlite_file(path: Path, kind: str) -> None:
    """A file that is there but no SQLite database (someone else's file, a wrong path) is a
    one-line error, before any lock or temporary file is made beside it."""
    if path.is_dir():
        raise ConfigError(f"{kind} store {str(path)!r} is a directory; name a file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"{kind} store {str(path)!r} cannot be read ({e.strerror})") from None
    if head and head != SQLITE_MAGIC:
        raise ConfigError(
            f"{kind} store {str(path)!r} is not an SQLite database, so it is left alone; give "
            "the path of a store, or of a file to create"
        )


def ensure_sqlite(
    path: Path,
    kind: str,
    create: Callable[[Path], None],
    complete: Callable[[Path], bool],
    work: Callable[[Path], int],
) -> None:
    """Make `path` a complete store: `create(tmp)` builds one into `tmp`; `complete(path)` says
    whether a file is usable; `work(path)` counts what it holds (runs, trials)."""
    check_sqlite_file(path, kind)
    if path.is_file() and complete(path):
        return  # the common case, without taking the lock
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path):
        if path.exists():
            if complete(path):
                return  # another process finished it while we waited
            held = work(path)
            if held:
                raise ConfigError(
                    f"{kind} store {str(path)!r} is incomplete or of another version but holds "
                    f"{held} records, so it is left alone: back it up, then upgrade it (MLflow: "
                    f"`mlflow db upgrade sqlite:///{path}`) or move it aside for a new store"
                )
            print(f"{kind} store {str(path)!r} was left half-created by an interrupted start; "
                  "rebuilding it (it held nothing)", file=sys.stderr)  # fmt: skip
            path.unlink()
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # killed creators' leftovers
            stale.unlink()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            create(tmp)
            os.replace(tmp, path)  # atomic: readers see nothing or a complete store
        finally:
            tmp.unlink(missing_ok=True)


def query(path: Path, sql: str) -> list[tuple]:
    """Read-write (never creating the file): a writer killed mid-transaction leaves a hot
    journal that only a writable connection can roll back; a read-only one fails with
    "attempt to write a readonly database", which once read as "half-created" and deleted a
    store full of finished trials."""
    with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=60)) as db:
        return db.execute(sql).fetchall()


def _missing_table(e: sqlite3.OperationalError) -> bool:
    """The one OperationalError that says something of the file's schema. Others ("database is
    locked", I/O) are transient and say nothing: they propagate, never leading to a rebuild
    that would delete a live store."""
    return "no such table" in str(e)


def _schema_rows(path: Path, sql: str) -> list[tuple] | None:
    """`query`'s rows, or None where the file lacks the table or is no database at all."""
    try:
        return query(path, sql)
    except sqlite3.OperationalError as e:
        if _missing_table(e):
            return None
        raise
    except sqlite3.DatabaseError:
        return None


def _count(path: Path, table: str) -> int:
    """Rows of `table`; a file that is not a database counts as holding work (never deleted)."""
    try:
        return int(query(path, f"SELECT count(*) FROM {table}")[0][0])
    except sqlite3.OperationalError as e:
        if _missing_table(e):  # nothing recorded yet
            return 0
        raise
    except sqlite3.DatabaseError:  # not a database at all: someone else's file
        return -1 if path.stat().st_size else 0


# ---- MLflow ------------------------------------------------------------------------------------


def _mlflow_head() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def mlflow_complete(path: Path) -> bool:
    return _schema_rows(path, "SELECT version_num FROM alembic_version") == [(_mlflow_head(),)]


def create_mlflow(tmp: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{tmp}", (tmp.parent / "artifacts").resolve().as_uri())
    store.engine.dispose()


def ensure_mlflow_store(path: Path) -> None:
    ensure_sqlite(path, "MLflow", create_mlflow, mlflow_complete, lambda p: abs(_count(p, "runs")))


# ---- Optuna ------------------------------------------------------------------------------------


def optuna_complete(path: Path) -> bool:
    tables = ("SELECT schema_version FROM version_info", "SELECT version_num FROM alembic_version")
    return all(len(_schema_rows(path, sql) or ()) == 1 for sql in tables)


def create_optuna(tmp: Path) -> None:
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp}")
    storage.remove_session()
    storage.engine.dispose()


def ensure_optuna_store(path: Path) -> None:
    ensure_sqlite(path, "Optuna", create_optuna, optuna_complete,
                  lambda p: abs(_count(p, "trials")))  # fmt: skip
