import math

import torch

from bench.datasets import create_dataset, dataset_registry
from bench.rng import DATA, Streams


def test_ring8_has_eight_distinct_modes_on_the_unit_circle():
    data = create_dataset("ring8")
    assert data.means.shape == (8, 2) and data.sigma == 0.01
    assert torch.allclose(data.means.norm(dim=1), torch.ones(8))
    angles = torch.atan2(data.means[:, 1], data.means[:, 0]).remainder(2 * math.pi)
    expected = 2 * math.pi * torch.arange(8) / 8
    assert torch.allclose(angles.sort().values, expected.float(), atol=1e-6)
    assert torch.cdist(data.means, data.means).add(torch.eye(8)).min() > 0.7  # none coincide


def test_grid25_means_and_sigma():
    data = create_dataset("grid25")
    assert data.sigma == 0.05
    expected = {(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert {tuple(int(v) for v in m) for m in data.means.round()} == expected


def test_sampling_is_seeded_and_streams_differ_per_seed():
    data = create_dataset("ring8")
    a = data.sample(64, Streams([0], DATA))
    b = data.sample(64, Streams([5, 0], DATA))  # seed 0 in the second slot of two
    c = data.sample(64, Streams([1], DATA))
    assert a.shape == (1, 64, 2) and b.shape == (2, 64, 2)
    assert torch.equal(a[0], b[1]) and not torch.equal(a, c)


def test_registry_lists_both_mixtures():
    assert {"ring8", "grid25"} <= set(dataset_registry.names())
