"""Tensor helpers shared by data, metrics and models: a leaf module (imports nothing of ours)."""

from __future__ import annotations

import hashlib

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
