"""Counter-based random streams: one per run, drawn for all K runs of a population at once.

Each run's stream is SplitMix64 (Steele, Lea and Flood 2014; Vigna's splitmix64.c) started at a
key derived from (seed, purpose): its i-th 64-bit output is mix(key + i * GAMMA), a function of
(key, i) alone. So one draw for K runs is one short chain of tensor ops whatever K is (a
torch.Generator per run costs K kernel launches per draw: on a GPU that, not the models, bounded
a large population), and a run's numbers depend on its seed, never on its slot, on K or on the
device: the integer arithmetic is exact everywhere, uniforms are those integers scaled, normals
are `ndtri` of a uniform in float64 (CPU and CUDA may differ there in the last ulp).

torch has no unsigned 64-bit multiply on every device, so the streams compute in int64: a
product wraps modulo 2^64 like the unsigned one (same low 64 bits), and a logical right shift is
an arithmetic one masked. `splitmix64` below is the pure-Python reference the tests compare to.
"""

from __future__ import annotations

import math

import torch

_MASK = (1 << 64) - 1
GAMMA, M1, M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

BLOCK_OUTPUTS = 1 << 18  # outputs computed at once, over all K streams (2 MiB of int64)

# What each stream is for, so that a run's data, noise, evaluation and method draws never share
# numbers (data and noise stay paired when a method draws too).
DATA, NOISE, EVAL, METHOD = 0, 1, 2, 3


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * M1) & _MASK
    z = ((z ^ (z >> 27)) * M2) & _MASK
    return z ^ (z >> 31)


def splitmix64(key: int, n: int) -> list[int]:
    """The first `n` outputs of the stream at `key`, as unsigned ints (reference for the tests)."""
    return [_mix_int((key + (i + 1) * GAMMA) & _MASK) for i in range(n)]


def _signed(x: int) -> int:
    x &= _MASK
    return x - (1 << 64) if x >> 63 else x


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser, in place on a fresh tensor `z` (fewer allocations)."""
    z.bitwise_xor_(_shr(z, 30)).mul_(_signed(M1))
    z.bitwise_xor_(_shr(z, 27)).mul_(_signed(M2))
    return z.bitwise_xor_(_shr(z, 31))


def stream_key(seed: int, purpose: int) -> int:
    """The key of run `seed`'s stream for `purpose` (unsigned)."""
    return _mix_int((seed * 1000 + purpose) & _MASK)


class Streams:
    """One stream per seed, for one purpose, drawn in lockstep: every draw returns [K, *shape]
    and advances each stream by the same count, so member k's numbers are its seed's alone."""

    def __init__(self, seeds, purpose: int, device: torch.device | str = "cpu"):
        keys = [_signed(stream_key(int(s), purpose)) for s in seeds]
        self.keys = torch.tensor(keys, dtype=torch.int64, device=device)[:, None]
        self.used = 0  # outputs drawn so far, per stream
        # Outputs are computed a block at a time and handed out in order: the i-th output a
        # draw gets is still mix(key + i * GAMMA), but the ~13 ops of the finaliser run once
        # per block rather than once per draw (what dominated a small run's draws).
        self._block = torch.empty(len(keys), 0, dtype=torch.int64, device=device)
        self._start = 0  # index (0-based) of the block's first output

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def bits(self, *shape: int) -> torch.Tensor:
        """[K, *shape] raw 64-bit outputs (int64)."""
        n = math.prod(shape)
        at = self.used - self._start
        if at + n > self._block.shape[1]:
            self._refill(max(n, BLOCK_OUTPUTS // len(self.keys)))
            at = 0
        self.used += n
        return self._block[:, at : at + n].reshape(-1, *shape)

    def _refill(self, m: int) -> None:
        """The next `m` outputs of every stream, from the first one not handed out yet."""
        i = torch.arange(1, m + 1, dtype=torch.int64, device=self.device) * _signed(GAMMA)
        self._block = _mix(self.keys + _signed(self.used * GAMMA) + i)
        self._start = self.used

    def uniform(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """U[0, 1): the top 24 bits in float32 (exact, never 1.0), else the top 53."""
        dtype = dtype or torch.get_default_dtype()
        if dtype in (torch.float32, torch.float16, torch.bfloat16):
            return (_shr(self.bits(*shape), 40).float() * 2.0**-24).to(dtype)
        return _shr(self.bits(*shape), 11).to(dtype) * 2.0**-53

    def normal(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """N(0, 1) by inversion of a uniform in (0, 1), computed in float64."""
        # The top 53 bits as a signed integer in [-2^52, 2^52), moved to (0, 1).
        u = (self.bits(*shape) >> 11).double().mul_(2.0**-53).add_(0.5 + 2.0**-54)
        return torch.special.ndtri(u).to(dtype or torch.get_default_dtype())

    def integers(self, high: int, *shape: int) -> torch.Tensor:
        """Uniform on {0, ..., high - 1} (int64; the modulo bias is below high / 2^64):
        `remainder` takes the divisor's sign, so signed bits need no shift."""
        return self.bits(*shape).remainder(high)
