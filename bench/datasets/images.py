"""Image data: the base every image data set shares, scikit-learn's 8x8 `digits`, and the
1,000-mode `stacked-<base>` built from any grayscale 10-class base (VEEGAN's and PacGAN's
protocol: three independent random images as the RGB channels). File-based sets are in
files.py and folder.py.

Images are kept as uint8 [N, C, H, W] tensors, exactly what generated images are quantised to
before any metric; training batches are mapped to [-1, 1] (G ends in tanh). Missing files are a
one-line error that says how to get them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from bench.datasets.base import Dataset, dataset_registry
from bench.errors import ConfigError
from bench.metrics.images import (
    INCEPTION,
    choose_extractor,
    image_declarations,
    settle_extractor,
    stacked_declarations,
)
from bench.tensors import to_unit


def noise_images(n: int, shape, generator: torch.Generator) -> torch.Tensor:
    """Independent uniform uint8 pixels."""
    return torch.randint(0, 256, (n, *shape), generator=generator, dtype=torch.uint8)


class _Replay(nn.Module):
    """A "generator" that returns the next images of a fixed set, in [-1, 1], whatever z is
    (libraries that draw their own noise call it with batches of z)."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images, self.position = images, 0

    def forward(self, z):
        idx = (self.position + torch.arange(len(z))) % len(self.images)
        self.position += len(z)
        return to_unit(self.images[idx]).to(z.device)


class ReplaySampler:
    """The trainer's Sampler interface over a fixed set of uint8 images: reference rows are
    scored by exactly the code that scores a run's generator."""

    def __init__(self, images: torch.Tensor, seed: int = 0):
        self.images, self.module, self.seed = images, _Replay(images), seed
        self.z_dim, self.device = 1, torch.device("cpu")

    def batches(self, n: int, batch: int = 2000):
        for i in range(0, n, batch):
            yield to_unit(self.images[torch.arange(i, min(n, i + batch)) % len(self.images)])

    def __call__(self, n: int) -> torch.Tensor:
        return torch.cat(list(self.batches(n)))


class ImageSet(Dataset):
    """What every image data set shares: a small sample grid kept per run, and reference sets
    served through a ReplaySampler, one draw each (an image evaluation takes seconds to
    minutes)."""

    keep_samples = 64  # generated images kept for the sample grid
    reference_draws = 1

    def replay(self, samples):
        return ReplaySampler(samples)


class ImageData(ImageSet):
    """Labelled uint8 images with a train and a test split; 10 classes."""

    n_classes = 10
    channels = 1
    size = 28

    def __init__(self, device="cpu", data_root: str | None = None, extractor: str = "auto",
                 inception_weights: str | None = None, image_size: int = 0):  # fmt: skip
        self.device = torch.device(device)
        self.image_size = image_size or self.size
        self.train_x, self.train_y, self.test_x, self.test_y = self.load(data_root)
        # (torch-fidelity extractor, metric suffix, weights): decided once, used by every eval
        self.features = choose_extractor(f"{self.name}-cnn", extractor, inception_weights)
        self._train = self.train_x.to(self.device)

    def load(self, data_root):
        """(train images, train labels, test images, test labels): uint8 [N, C, H, W], int64."""
        raise NotImplementedError

    @classmethod
    def check(cls, cfg) -> None:
        """Fail with a one-line error before training when the data cannot be had or do not
        fit the model. These images have one size; only `imagefolder` resizes."""
        size = cfg.model.image_size
        if size != cls.size:
            raise ConfigError(
                f"{cls.name}: image_size={size} is not allowed; its images are {cls.size} px "
                "(only imagefolder resizes)"
            )

    @classmethod
    def settle(cls, train):
        extractor = settle_extractor(train.extractor, train.inception_weights or None)
        return dataclasses.replace(train, extractor=extractor)

    @classmethod
    def declare_metrics(cls, train):
        return image_declarations(cls.name, train.extractor)

    @classmethod
    def train_defaults(cls) -> dict:
        return {"eval_samples": 10_000, "eval_every": 1000, "batch_size": 64}

    @classmethod
    def model_defaults(cls) -> dict:
        return {"kind": "dcgan", "channels": cls.channels, "image_size": cls.size,
                "z_dim": 64, "hidden": 32}  # fmt: skip

    def sample(self, n, rng):
        return to_unit(self._train[rng.integers(len(self._train), n)])

    @property
    def metrics(self):
        return image_declarations(self.name, "inception" if self.features[0] == INCEPTION
                                  else "cnn")  # fmt: skip

    def real_eval_images(self) -> torch.Tensor:
        """The held-out images metrics compare against (uint8)."""
        return self.test_x

    def describe(self):
        return {"classes": self.n_classes, "size": self.image_size, "channels": self.channels,
                "train": len(self.train_x), "test": len(self.test_x)}  # fmt: skip

    def references(self, n, seed=0):
        """Training-split images (the ceiling: metrics compare with the test split), uniform
        noise images, and images of one class only (a collapse onto one mode)."""
        gen = torch.Generator().manual_seed(seed)
        x, y = self.train_x, self.train_y
        one = x[y == y.min()]
        return {
            "data": x[torch.randint(len(x), (n,), generator=gen)],
            "uniform noise": noise_images(n, x.shape[1:], gen),
            "one mode": one[torch.randint(len(one), (n,), generator=gen)],
        }


@dataset_registry.register("digits")
class Digits(ImageData):
    """scikit-learn's 8x8 handwritten digits (ships with scikit-learn: offline everywhere)."""

    description = "8x8 handwritten digits from scikit-learn (1,797 images), 80/20 split"
    size = 8

    def load(self, data_root):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.from_numpy(np.round(d.images * 255.0 / 16.0).astype(np.uint8)).unsqueeze(1)
        y = torch.from_numpy(d.target.astype(np.int64))
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        cut = int(0.8 * len(x))
        return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


class Stacked(ImageSet):
    """Three independent random images of a 10-class base as the 3 channels: 1,000 modes."""

    base_cls: type[ImageData]
    n_modes = 1000

    def __init__(self, device="cpu", data_root: str | None = None, **eval_options):
        self.base = self.base_cls(device, data_root, **eval_options)
        self.device = self.base.device

    @classmethod
    def check(cls, cfg):
        cls.base_cls.check(cfg)

    @classmethod
    def settle(cls, train):
        return cls.base_cls.settle(train)

    @classmethod
    def declare_metrics(cls, train):
        return stacked_declarations(cls.base_cls.name)

    @classmethod
    def train_defaults(cls) -> dict:
        return cls.base_cls.train_defaults() | {"eval_samples": 26_000}

    @classmethod
    def model_defaults(cls) -> dict:
        return cls.base_cls.model_defaults() | {"channels": 3}

    def sample(self, n, rng):
        return to_unit(self.stack(self.base._train, rng.integers(len(self.base._train), n, 3)))

    @staticmethod
    def stack(images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The stacks of `images` [N, 1, H, W] at index triples `idx` [..., 3]: [..., 3, H, W]."""
        return images[idx].squeeze(-3)

    @classmethod
    def stacks(cls, images: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """`n` random stacks of `images`, drawn from `gen` (fixed reference sets)."""
        return cls.stack(images, torch.randint(len(images), (n, 3), generator=gen))

    def real_eval_images(self) -> torch.Tensor:
        x = self.base.test_x
        return self.stacks(x, len(x), torch.Generator().manual_seed(0))

    def references(self, n, seed=0):
        """Stacks of training images, uniform noise images, and stacks of one class only (a
        single mode of the 1,000)."""
        gen = torch.Generator().manual_seed(seed)
        x, y = self.base.train_x, self.base.train_y
        return {
            "data": self.stacks(x, n, gen),
            "uniform noise": noise_images(n, (3, *x.shape[2:]), gen),
            "one mode": self.stacks(x[y == y.min()], n, gen),
        }

    def describe(self):
        return {"modes": 1000, "base": self.base.name} | {
            k: v for k, v in self.base.describe().items() if k != "channels"
        }


def register_stacked(base: type[ImageData]) -> type[Stacked]:
    name = f"stacked-{base.name}"
    text = f"3 random {base.name} images as RGB: 1,000 modes"
    cls = type(name, (Stacked,), {"base_cls": base, "__module__": __name__, "description": text})
    return dataset_registry.register(name)(cls)


Digits.caveat = (
    "8x8 digits hold only 360 held-out images, the reference every FD and KID here is computed "
    "against: read them beside the `data` row (the same metric on training images), not beside "
    "zero."
)
register_stacked(Digits).caveat = (
    "Limits of this 8x8 set: its FD reference is 360 held-out stacks in a 384-d feature space "
    "(a singular covariance, so FD carries a large finite-sample bias: compare with the `data` "
    "row, not with zero), and its classifier gives even uniform noise images hundreds of the "
    "1,000 modes (the `uniform noise` row), so a mode count near 1,000 is not coverage: read "
    "`stacked_kl` beside the rows. Where MNIST's files are present, `stacked-mnist` (28x28, "
    "26,000 samples against 10,000 held-out stacks) is the standard protocol."
)
