"""Adversarial losses as pure functions of D's logits, looked up by name in `LOSSES`. Logits are
[K, B] (K runs of a population, or [B] alone): each loss is a mean over the batch, per run."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F


class Loss(NamedTuple):
    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real, fake) logits
    generator: Callable[[torch.Tensor], torch.Tensor]  # fake logits


def _ns_d(real, fake):
    return F.softplus(-real).mean(-1) + F.softplus(fake).mean(-1)  # BCE(real, 1) + BCE(fake, 0)


def _ns_g(fake):
    return F.softplus(-fake).mean(-1)  # non-saturating: BCE(D(G(z)), 1)


def _w_d(real, fake):
    return fake.mean(-1) - real.mean(-1)


def _hinge_d(real, fake):
    return F.relu(1 - real).mean(-1) + F.relu(1 + fake).mean(-1)


def _neg_mean(fake):
    return -fake.mean(-1)


LOSSES = {
    "ns": Loss(_ns_d, _ns_g),
    "wasserstein": Loss(_w_d, _neg_mean),
    "hinge": Loss(_hinge_d, _neg_mean),
}
