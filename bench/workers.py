"""Worker processes (suite runs, sweep trials): one torch thread each, gone with their parent,
and stopped with it.

Stopping: Ctrl-C (SIGINT, which a terminal sends to every process of the group) and SIGTERM
reach the parent, which tells each worker to stop with SIGTERM. A worker turns that into
`Stopped` (a SystemExit): its run ends KILLED, its trial FAIL, and it exits quietly with its
locks released; one still there after STOP_GRACE seconds is killed. Workers ignore SIGINT
themselves, so a Ctrl-C never cuts their cleanup short twice.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

STOP_GRACE = 5.0  # seconds a worker has to end its run and exit before it is killed


class Stopped(SystemExit):
    """Raised in a worker told to stop (SIGTERM). A SystemExit, not a KeyboardInterrupt, so
    that multiprocessing's bootstrap exits with its code instead of printing a traceback; the
    tracker ends the run KILLED on either."""


_IN_WORKER = False  # set in worker processes: they hold one thread whatever the model
_CHOICE: tuple[int, str] = (0, "")  # the last run's thread count and why (recorded with it)


def worker_init() -> None:
    """A suite or sweep worker: one torch thread, and killed with its parent (Linux), so a
    SIGKILLed suite leaves no orphan still writing runs that the resumed suite redoes."""
    import ctypes
    import signal

    import torch

    global _IN_WORKER
    _IN_WORKER = True
    torch.set_num_threads(1)
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died while we started (before the call above could take)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us


def stop_on_sigterm() -> None:
    """In a worker: SIGTERM ends the work as `Stopped` (its run KILLED, its trial FAIL, its
    locks released). Only for workers that share no lock with others (sweep workers, a
    `WorkerPool`'s): in a multiprocessing.Pool, a worker that unwinds on SIGTERM can leave a
    queue lock that its sibling then waits on forever, and Pool.terminate waits for both."""
    signal.signal(signal.SIGTERM, _stop)


def _stop(signum: int, frame: Any) -> None:
    if deferred(signum, frame):
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop: its cleanup runs to the end
    raise Stopped(128 + signum)


# Code an interrupt must not land in: an exception raised inside a store's call can leave its
# connection holding the store's lock, and the run's own KILLED record then waits on that
# lock (20 s with MLflow's SQLite store), past the grace its worker has to exit.
DATABASE_CODE = ("/sqlalchemy/", "/sqlite3/", "/mlflow/store/", "/optuna/storages/")


def deferred(signum: int, frame: Any) -> bool:
    """In a signal handler: when the interrupted code is a database call, deliver the signal
    again 50 ms later instead (and say so), so that the interrupt lands between calls."""
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in DATABASE_CODE):
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return True
        frame = frame.f_back
    return False


def exit_now(code: int) -> None:
    """End a stopped worker once its run and trial are recorded as ended: the exit handlers
    run (multiprocessing releases the worker's semaphores, so none is reported leaked), the
    interpreter's teardown does not (a worker stopped mid-training sat there for seconds,
    garbage-collecting torch's state, past its grace)."""
    import atexit
    import sys

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def signals_ignored():
    """SIGINT and SIGTERM ignored in this block (main thread only): a second Ctrl-C while the
    workers are being stopped must not leave them half-stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def stop_processes(procs: Iterable, grace: float = STOP_GRACE) -> None:
    """Stop worker processes: SIGTERM (a worker ends its run and exits), then SIGKILL for any
    still there after `grace` seconds; returns once every one is gone."""
    procs = [p for p in procs if p.pid is not None]
    with signals_ignored():
        for p in procs:
            if p.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.exitcode is None:
                p.kill()
                p.join()


class WorkerDied(RuntimeError):
    """A pool worker vanished mid-task (killed from outside, out of memory)."""


@contextlib.contextmanager
def worker_pool(jobs: int):
    """`jobs` spawned workers (`worker_init`) for `pool.imap(func, items)`. Leaving the block
    normally ends them; leaving it by an exception (Ctrl-C, SIGTERM, a failure) stops them
    within STOP_GRACE seconds, their runs marked KILLED. Each worker has its own pipe: no
    lock is shared between processes, so a worker killed at any moment cannot wedge the
    others or the parent (a multiprocessing.Pool's shared queue lock can)."""
    pool = WorkerPool(jobs)
    try:
        yield pool
    except BaseException:
        stop_processes(pool.procs)
        raise
    finally:
        pool.close()


def choose_threads(kind: str, device: str) -> tuple[int, str]:
    """torch's intra-op thread count for one run in this process, and why. Tiny models want
    one thread (a second one on a busy 2-core machine ran 16x slower); convolutions get the
    cores, up to 4; a GPU run leaves torch's default to the host side. The load is not looked
    at: the same run on the same machine takes the same count (CPU kernels may sum in a
    different order with another thread count, so results could differ in the last bits)."""
    import torch

    from bench.config import VECTOR_KINDS

    if _IN_WORKER:
        return 1, "worker process: one thread each, one worker per core"
    if not device.startswith("cpu"):
        return torch.get_num_threads(), "GPU run: torch's default for the host side"
    if kind in VECTOR_KINDS:
        return 1, f"{kind} MLP on the CPU: its matrices are too small to share between threads"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, min(4, cores or 1))
    return n, f"conv model on the CPU: {n} threads ({cores} cores, at most 4)"


def set_run_threads(kind: str, device: str) -> tuple[int, str]:
    """Apply `choose_threads` to this process and remember it for the run's record."""
    import torch

    global _CHOICE
    _CHOICE = choose_threads(kind, device)
    torch.set_num_threads(_CHOICE[0])
    return _CHOICE


def thread_params() -> dict[str, int | str]:
    """The last run's thread choice (in this process) as MLflow params."""
    return {"host.threads": _CHOICE[0], "host.threads_reason": _CHOICE[1]}


# Runs per population under `--population auto` (bench/population.py). CPU: an MLP population
# shares each core's matrix units (`make perf` measures it); convs gain nothing on a CPU (a
# grouped conv is about as slow as K convs), so they stay single. CUDA: a small run is
# launch-bound, so many runs share each kernel; not yet measured on a GPU here (see the README).
AUTO_POPULATION = {("cpu", "vector"): 16, ("cpu", "image"): 1,
                   ("cuda", "vector"): 256, ("cuda", "image"): 16}  # fmt: skip


def choose_population(requested: int | str, kind: str, device: str) -> int:
    """Runs trained together in one population: `requested`, or for `auto` by device and model."""
    from bench.config import VECTOR_KINDS
    from bench.errors import ConfigError

    if requested == "auto":
        where = "cpu" if device.startswith("cpu") else "cuda"
        return AUTO_POPULATION[(where, "vector" if kind in VECTOR_KINDS else "image")]
    if isinstance(requested, int) and not isinstance(requested, bool) and requested >= 1:
        return requested
    raise ConfigError(f"population={requested!r} is not allowed; allowed: auto or an integer >= 1")


def parse_population(text: str) -> int | str:
    """The CLI's --population: `auto` or a positive integer."""
    from bench.errors import ConfigError

    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"population={text!r} is not allowed; allowed: auto or an integer >= 1")
    return value


class WorkerPool:
    """Spawned processes, each serving one task at a time over its own pipe."""

    def __init__(self, jobs: int):
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch state
        self.conns, self.procs = [], []
        for _ in range(jobs):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(theirs,), daemon=True)
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)

    def imap(self, func: Callable, items: Iterable) -> Iterator:
        """func(item) for each item, computed on the workers, yielded in order; an exception a
        task raised is raised here."""
        from multiprocessing.connection import wait

        items, done, busy = list(items), {}, {}
        queue, idle, nxt = list(range(len(items)))[::-1], list(self.conns), 0
        while nxt < len(items):
            while idle and queue:
                conn, i = idle.pop(), queue.pop()
                conn.send((func, items[i]))
                busy[conn] = i
            for conn in wait(list(busy)):
                i = busy.pop(conn)
                try:
                    ok, value = conn.recv()
                except (EOFError, OSError):
                    proc = self.procs[self.conns.index(conn)]
                    proc.join(1.0)
                    raise WorkerDied(f"worker {proc.pid} ended (exit code {proc.exitcode}) "
                                     f"during task {i}") from None  # fmt: skip
                if not ok:
                    raise value
                done[i] = value
                idle.append(conn)
            while nxt in done:
                yield done.pop(nxt)
                nxt += 1

    def close(self) -> None:
        """Ask idle workers to exit and wait for all (a stopped or dead one is already gone)."""
        for conn, proc in zip(self.conns, self.procs, strict=True):
            if proc.exitcode is None:
                with contextlib.suppress(OSError):
                    conn.send(None)
        for conn, proc in zip(self.conns, self.procs, strict=True):
            proc.join(STOP_GRACE)
            if proc.exitcode is None:
                proc.kill()
                proc.join()
            conn.close()


def _serve(conn) -> None:
    """A pool worker: run tasks until told to stop (None) or the parent is gone."""
    worker_init()
    stop_on_sigterm()
    try:
        _serve_tasks(conn)
    except Stopped as e:
        exit_now(int(e.code))


def _serve_tasks(conn) -> None:
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent closed its end
            return
        if task is None:
            return
        func, item = task
        try:
            reply = (True, func(item))
        except Exception as e:  # the task's failure is the parent's to raise, as Pool does
            reply = (False, e)
        try:
            conn.send(reply)
        except Exception as e:  # an exception or result that does not pickle
            conn.send((False, RuntimeError(f"{type(e).__name__}: {e}")))
