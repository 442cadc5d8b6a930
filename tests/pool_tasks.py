"""Tasks for worker pools in tests (spawned workers import them by name)."""

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def refuse(x: int) -> int:
    raise ValueError(f"task {x} refused")


def linger(folder: str) -> None:
    """Say which worker took the task, then work until stopped."""
    Path(folder, f"task-{os.getpid()}-{time.time_ns()}").touch()
    while True:
        time.sleep(0.05)
