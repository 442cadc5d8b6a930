"""The per-run random streams: SplitMix64 bit for bit, independent of slot and K, distributed as
their names say, and drawn with a number of ops that does not grow with K."""

import collections

import pytest
import torch
from scipy import stats
from torch.utils._python_dispatch import TorchDispatchMode

from bench.rng import DATA, NOISE, Streams, splitmix64, stream_key

# SplitMix64 from state 0: the published first outputs (e.g. rand_xoshiro's SplitMix64 test).
SEED0 = [16294208416658607535, 7960286522194355700, 487617019471545679, 17909611376780542444]


def test_pure_python_reference_is_splitmix64():
    assert splitmix64(0, 4) == SEED0


def test_tensor_streams_equal_the_reference_bit_for_bit():
    seeds = [0, 3, 2**40 + 7]
    s = Streams(seeds, NOISE)
    first, second = s.bits(5), s.bits(2, 3)  # the counter carries on across draws
    for row, a, b in zip(seeds, first, second, strict=True):
        ref = splitmix64(stream_key(row, NOISE), 11)
        assert [x & (2**64 - 1) for x in a.tolist() + b.flatten().tolist()] == ref


def test_blocks_are_invisible_draws_across_refills_equal_the_reference(monkeypatch):
    import bench.rng

    monkeypatch.setattr(bench.rng, "BLOCK_OUTPUTS", 8)  # 4 outputs per stream per block
    s = Streams([3, 9], DATA)
    draws = [s.bits(3), s.bits(2, 3), s.bits(1), s.bits(9)]  # refills mid-way and oversized
    got = torch.cat([d.flatten(1) for d in draws], 1)
    for row, seed in zip(got.tolist(), (3, 9), strict=True):
        assert [x & (2**64 - 1) for x in row] == splitmix64(stream_key(seed, DATA), 19)


def test_a_runs_draws_depend_on_its_seed_not_on_its_slot_or_k():
    alone = Streams([7], DATA)
    crowd = Streams([1, 2, 7, 4], DATA)
    for draw in ("uniform", "normal"):
        assert torch.equal(getattr(alone, draw)(3, 2)[0], getattr(crowd, draw)(3, 2)[2])
    assert torch.equal(alone.integers(25, 9)[0], crowd.integers(25, 9)[2])
    assert not torch.equal(Streams([7], NOISE).bits(4), Streams([7], DATA).bits(4))


def test_uniform_float32_is_exact_and_below_one():
    u = Streams(range(4), DATA).uniform(50_000, dtype=torch.float32)
    assert u.dtype == torch.float32 and float(u.min()) >= 0 and float(u.max()) < 1
    assert torch.equal(u * 2**24, (u * 2**24).round())  # 24-bit grid: no rounding to 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_draws_follow_their_distributions(seed):
    s = Streams([seed], DATA)
    u = s.uniform(20_000, dtype=torch.float64)[0].numpy()
    z = s.normal(20_000, dtype=torch.float64)[0].numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert stats.kstest(z, "norm").pvalue > 1e-3
    counts = torch.bincount(s.integers(25, 25_000)[0], minlength=25).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    pairs = s.normal(20_000, 2, dtype=torch.float64)[0].numpy()
    assert abs(stats.pearsonr(pairs[:, 0], pairs[:, 1]).statistic) < 0.03  # draws independent


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def test_one_draw_for_k_runs_is_the_same_ops_whatever_k():
    """A draw for K runs costs the same kernels for K = 2 and K = 64 (on a GPU, a generator per
    run cost K launches per draw)."""
    counts = []
    for k in (2, 64):
        s = Streams(range(k), NOISE)
        with _Count() as c:
            s.normal(256, 2)
            s.integers(8, 256)
        counts.append(c.ops)
    assert counts[0] == counts[1]
