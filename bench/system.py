"""This machine's files, processes and store URIs, apart from any tracker: who owns a run
(host:pid, alive or not), where a command may write (folders, output files, SQLite stores), what a
tracking or storage URI may be. Imported by the tracker, the offline journals, the stores, sweeps
and the CLI (and it imports none of them).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, safe_url

DB_SCHEMES = ("postgresql", "mysql", "mssql")


def check_uri_form(uri: object, what: str = "tracking URI") -> str:
    """What can be checked of a tracking URI without reaching it (a typed one, or one read
    back from an offline journal): a supported scheme, and an SQLite URI that names a file.
    Returns the scheme."""
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(
            f"{what} {uri!r} is not a URI; use sqlite:///PATH, http://HOST:PORT or a DB URL"
        )
    scheme = uri.partition("://")[0].partition("+")[0]
    if scheme not in ("http", "https", "sqlite", *DB_SCHEMES):
        raise ConfigError(
            f"{what} {safe_url(uri)!r}: scheme {scheme!r} is not supported; use "
            "sqlite:///PATH, http(s)://HOST:PORT or a postgresql/mysql/mssql URL"
        )
    if scheme == "sqlite":
        sqlite_file(uri, what)
    return scheme


def worker_id() -> str:
    """host:pid of this process: who owns a RUNNING run, so that orphans can be found."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(worker: str, started_ms: int = 0) -> bool:
    """Whether the process that owns a run (its `worker` tag, host:pid) may be running it
    still. Another machine's process: assumed alive, only its owner can tell. This machine's:
    its pid exists and that process began before the run did (a pid reused by a later process
    is not the owner). No tag: no owner to wait for."""
    if not worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True
    if not pid.isdigit() or not pid_alive(int(pid)):
        return False
    began = process_start(int(pid))
    return began is None or began <= started_ms / 1000 + 2.0  # /proc's clock: 1 s steps


def process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(ln for ln in Path("/proc/stat").read_text().splitlines()
                    if ln.startswith("btime "))  # fmt: skip
    except (OSError, StopIteration):
        return None
    ticks = int(stat.rpartition(")")[2].split()[19])  # field 22, after the command's name
    return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sqlite_path(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


def check_database(url: str, what: str) -> None:
    """Connect once (5 s at most) so an unreachable database is one line, not a traceback."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args=_timeout_args(url))
        with engine.connect():
            pass
        engine.dispose()
    except Exception as e:  # drivers, hosts, credentials: sqlalchemy wraps them all
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        first = first.replace(url, safe_url(url))
        raise ConfigError(f"{what} {safe_url(url)!r} cannot be opened ({first[:200]})") from None


def _timeout_args(url: str) -> dict[str, Any]:
    return {"connect_timeout": 5} if url.startswith(("postgresql", "mysql")) else {}


def writable_dir(folder: Path) -> bool:
    """Whether `folder` exists writable, or could be created (checked without creating it)."""
    p = folder.resolve()
    while not p.exists():
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def writable_file_path(path: Path) -> bool:
    """Whether a file could be written at `path` (a directory there is no such path)."""
    if path.exists():
        return path.is_file() and os.access(path, os.W_OK)
    return writable_dir(path.parent)


def check_output_file(path: Path, what: str) -> Path:
    """`path` as a file this command will write, checked before any work: one line when it is
    a directory or cannot be written."""
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a directory; give a file path")
    if not writable_file_path(path):
        raise ConfigError(f"{what} {str(path)!r} is not writable")
    return path


def sqlite_file(uri: str, what: str) -> Path:
    """The file of an SQLite store URI, `sqlite:///PATH`. An in-memory database (`sqlite://`,
    `sqlite:///:memory:`, `?mode=memory`) is refused: a tracking store or a study there is lost
    when the process ends (and MLflow then falls back to ./mlruns), so nothing is resumable."""
    rest = uri.partition("://")[2]
    path, _, query = rest.partition("?")
    if path in ("", "/", "/:memory:") or "mode=memory" in query:
        raise ConfigError(f"{what} {safe_url(uri)!r} is an in-memory SQLite database that "
                          "keeps nothing once the command ends; use sqlite:///PATH")  # fmt: skip
    if not path.startswith("/"):
        raise ConfigError(f"{what} {safe_url(uri)!r} names no file; use sqlite:///PATH")
    file = Path(path[1:])
    if file.is_dir():
        raise ConfigError(f"{what} {safe_url(uri)!r}: {str(file)!r} is a directory; name a file")
    if not writable_file_path(file):
        folder = file if file.exists() else file.parent
        raise ConfigError(f"{what} {safe_url(uri)!r}: {str(folder)!r} is not writable")
    return file


def write_json(folder: Path, name: str, obj: Any) -> Path:
    path = folder / name
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return path


@contextmanager
def artifact_folder():
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as d:
        yield Path(d)
