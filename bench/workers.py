"""Worker processes (suite runs, sweep trials): one torch thread each, and gone with their
parent."""

from __future__ import annotations

import contextlib


def worker_init() -> None:
    """A suite or sweep worker: one torch thread, and killed with its parent (Linux), so a
    SIGKILLed suite leaves no orphan still writing runs that the resumed suite redoes."""
    import ctypes
    import signal

    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
