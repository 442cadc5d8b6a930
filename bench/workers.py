"""Worker processes (suite runs, sweep trials): one torch thread each, and gone with their
parent."""

from __future__ import annotations

import contextlib
import multiprocessing
import os

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
