"""Tensor helpers shared by data, metrics and models: a leaf module (imports nothing of ours)."""

from __future__ import annotations

import contextlib
import hashlib
import pickle

import torch


def digest(x: torch.Tensor) -> str:
    """A short fingerprint of image data (its first 2,000 images), for cache keys: different
    files never share a cached classifier or reference statistics."""
    return hashlib.sha256(x[:2000].contiguous().numpy().tobytes()).hexdigest()[:10]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8, the quantisation real images already have."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class UnsafeFile(Exception):
    """A file that torch would only load by running the code a pickle names."""


@contextlib.contextmanager
def weights_only_loading():
    """Every `torch.load` in the block (torch-fidelity's weights and cache files, which it
    loads with `weights_only=False`) loads tensors, numpy arrays and plain containers only: a
    doctored weights file, or a file planted in its cache folder, is refused, never run."""
    import numpy as np

    real_load = torch.load
    rebuild = np._core.multiarray._reconstruct
    allowed = [np.ndarray, np.dtype, rebuild, (rebuild, "numpy.core.multiarray._reconstruct")]
    allowed += [type(np.dtype(t)) for t in ("float32", "float64", "int64", "uint8")]

    def load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        try:
            with torch.serialization.safe_globals(allowed):
                return real_load(f, *args, **kwargs)
        except pickle.UnpicklingError as e:
            reason = str(e).strip().splitlines()[0][:160]
            raise UnsafeFile(f"{f!s} holds more than tensors and arrays ({reason})") from None

    torch.load = load
    try:
        yield
    finally:
        torch.load = real_load
