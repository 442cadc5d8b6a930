"""A small CNN classifier of a base image data set: the feature extractor for offline image
metrics and the labeller of the stacked-data mode count.

Trained once per (data set, architecture) and cached on disk with its test accuracy, so later
evaluations train nothing. Metric names carry the extractor's name (`fd_digits_cnn`, never `fid`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bench.tensors import digest, to_unit

ARCH = "cnn-v2"
CACHE_DIR = Path("runs/extractors")
EPOCHS = {"digits": 40, "fashion-mnist": 5, "mnist": 3, "cifar10": 10}


def epochs_for(data) -> int:
    """The set's own count, else about 60,000 images' worth of updates (5 to 40 epochs)."""
    return EPOCHS.get(data.name) or min(40, max(5, 60_000 // len(data.train_x)))


class SmallCNN(nn.Module):
    """conv3-relu-conv3-relu with 2x2 max-pools until the side is at most 7, then a 128-unit
    feature layer and the class logits."""

    def __init__(self, channels: int, size: int, n_classes: int = 10, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        c, s = width, size
        while s > 7:
            layers += [nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, s = 2 * c, s // 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * s * s, 128), nn.ReLU())
        self.head = nn.Linear(128, n_classes)
        self.meta = {"channels": channels, "size": size, "n_classes": n_classes, "width": width}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def cache_file(data, cache_dir: Path | None = None) -> Path:
    """Keyed by data set, architecture and the training data itself (a changed file retrains)."""
    return (cache_dir or CACHE_DIR) / f"{data.name}-{ARCH}-{digest(data.train_x)}.pt"


@torch.no_grad()
def accuracy(net: SmallCNN, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    right = sum(
        int((net(to_unit(x[i : i + batch])).argmax(1) == y[i : i + batch]).sum())
        for i in range(0, len(x), batch)
    )
    return right / len(x)


def train_classifier(data, epochs: int, seed: int = 0, progress: bool = False) -> SmallCNN:
    """Adam 1e-3, batch 128, light random shifts; CPU is enough for these data sets."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SmallCNN(data.channels, data.train_x.shape[-1], data.n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data.train_x, data.train_y
    steps = epochs * ((len(x) + 127) // 128)
    bar = tqdm(total=steps, desc=f"classifier {data.name}", disable=not progress, file=sys.stderr)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(x), generator=gen).split(128):
            batch = to_unit(x[idx])
            shift = torch.randint(-1, 2, (2,), generator=gen).tolist()
            batch = torch.roll(batch, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net(batch), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update()
    bar.close()
    net.eval()
    return net


def load_or_train(data, cache_dir: Path | None = None, progress: bool = False):
    """(classifier, test accuracy, trained now?) for `data`, from the cache when present."""
    path = cache_file(data, cache_dir)
    if path.exists():
        saved = torch.load(path, weights_only=True)
        net = SmallCNN(**saved["meta"])
        net.load_state_dict(saved["state_dict"])
        net.eval()
        return net, float(saved["test_accuracy"]), False
    net = train_classifier(data, epochs_for(data), progress=progress)
    acc = accuracy(net, data.test_x, data.test_y)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"meta": net.meta, "state_dict": net.state_dict(), "test_accuracy": acc}, tmp)
    tmp.replace(path)  # atomic: a killed run never leaves half a file
    return net, acc, True
