"""Adversarial losses as pure functions of D's logits, looked up by name in `LOSSES`."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F


class Loss(NamedTuple):
    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real, fake) logits
    generator: Callable[[torch.Tensor], torch.Tensor]  # fake logits


def _ns_d(real, fake):
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # BCE(real, 1) + BCE(fake, 0)


def _ns_g(fake):
    return F.softplus(-fake).mean()  # non-saturating: BCE(D(G(z)), 1)


def _w_d(real, fake):
    return fake.mean() - real.mean()


def _hinge_d(real, fake):
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _neg_mean(fake):
    return -fake.mean()


LOSSES = {
    "ns": Loss(_ns_d, _ns_g),
    "wasserstein": Loss(_w_d, _neg_mean),
    "hinge": Loss(_hinge_d, _neg_mean),
}
