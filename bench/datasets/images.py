"""Image data sets: scikit-learn's 8x8 `digits`, `fashion-mnist` and `mnist` from their standard
IDX files, and the 1,000-mode `stacked-<base>` built from any of them (PROTOCOLS.md: three
independent random images as the RGB channels).

Images are kept as uint8 [N, C, H, W] tensors, exactly what generated images are quantised to
before any metric; training batches are mapped to [-1, 1] (G ends in tanh). Missing files are a
one-line error that says how to get them.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from bench.datasets.base import Dataset, dataset_registry
from bench.errors import ConfigError

FASHION_ROOTS = (Path("/usr/share/datasets/fashion-mnist"),)  # Debian's dataset-fashion-mnist
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array: magic 0x0000 08 NDIM, big-endian dims."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ConfigError(f"{str(path)!r} is not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        for folder in (root, root / "raw"):
            if (folder / name).exists():
                return folder / name
    return None


def load_idx_split(root: Path, split: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images [N, 1, 28, 28], int64 labels) of one split under `root`."""
    images_stem, labels_stem = IDX_FILES[split]
    images, labels = _find(root, images_stem), _find(root, labels_stem)
    if images is None or labels is None:
        raise ConfigError(
            f"{name}: IDX files {images_stem}[.gz] / {labels_stem}[.gz] not found under "
            f"{str(root)!r}; give --data-root, or install them ({_HOW_TO_GET[name]})"
        )
    x = torch.from_numpy(read_idx(images).copy()).unsqueeze(1)
    y = torch.from_numpy(read_idx(labels).astype(np.int64))
    return x, y


_HOW_TO_GET = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or torchvision.datasets.FashionMNIST"
    "(root, download=True) on a machine with internet",
    "mnist": "torchvision.datasets.MNIST(root, download=True) on a machine with internet",
}


METRIC_DIRECTIONS = (("modes", "max"), ("stacked_kl", "min"), ("fid", "min"), ("fd_", "min"),
                     ("kid", "min"), ("precision", "max"), ("recall", "max"))  # fmt: skip


class ImageMetrics:
    """Image metric names carry their extractor (`kid_digits_cnn`, or `kid` with Inception):
    reports and sweeps find them among the logged names."""

    primary_prefix = "kid"

    @classmethod
    def report_metrics_for(cls, keys):
        return [(k, d) for p, d in METRIC_DIRECTIONS for k in sorted(keys) if k.startswith(p)]

    @classmethod
    def primary_for(cls, keys):
        return next((k for k in sorted(keys) if k.startswith(cls.primary_prefix)), "kid")

    @classmethod
    def save_samples(cls, path, samples, title):
        from bench.plots import save_image_grid

        save_image_grid(path, samples[:64], title)

    @classmethod
    def save_sample_grid(cls, path, samples_by_label):
        from bench.plots import save_image_panels

        save_image_panels(path, {k: v[:16] for k, v in samples_by_label.items()})


class ImageData(ImageMetrics, Dataset):
    """Labelled uint8 images with a train and a test split; 10 classes."""

    primary_metric = "kid"
    direction = "minimize"
    n_classes = 10
    channels = 1
    size = 28

    keep_samples = 64  # generated images kept for the sample grid

    def __init__(self, device="cpu", data_root: str | None = None, extractor: str = "auto",
                 inception_weights: str | None = None):  # fmt: skip
        from bench.metrics.images import choose_extractor

        self.device = torch.device(device)
        # (torch-fidelity extractor, metric suffix, weights): decided once, used by every eval
        self.features = choose_extractor(f"{self.name}-cnn", extractor, inception_weights)
        self.primary_metric = f"kid{self.features[1]}"  # what a sweep optimises, as logged
        self.train_x, self.train_y, self.test_x, self.test_y = self.load(data_root)
        self._train = self.train_x.to(self.device)

    def load(self, data_root):
        raise NotImplementedError

    @classmethod
    def check(cls, data_root: str | None) -> None:
        """Fail with a one-line error before training when the data cannot be had."""

    @classmethod
    def train_defaults(cls) -> dict:
        return {"eval_samples": 10_000, "eval_every": 1000, "batch_size": 64}

    @classmethod
    def model_defaults(cls) -> dict:
        return {"kind": "dcgan", "channels": cls.channels, "image_size": cls.size,
                "z_dim": 64, "hidden": 32}  # fmt: skip

    def sample(self, n, generator):
        idx = torch.randint(len(self._train), (n,), generator=generator, device=self.device)
        return to_unit(self._train[idx])

    def real_eval_images(self) -> torch.Tensor:
        """The held-out images metrics compare against (uint8)."""
        return self.test_x

    def evaluate(self, generate, n):
        from bench.metrics.images import evaluate_images

        return evaluate_images(self, generate, n)

    def describe(self):
        return {"classes": self.n_classes, "size": self.size, "channels": self.channels,
                "train": len(self.train_x), "test": len(self.test_x)}  # fmt: skip


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8, the quantisation real images already have."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


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


class IdxData(ImageData):
    default_roots: tuple[Path, ...] = ()

    @classmethod
    def root(cls, data_root: str | None) -> Path:
        roots = (Path(data_root),) if data_root else cls.default_roots
        if not roots:
            raise ConfigError(f"{cls.name}: give --data-root ({_HOW_TO_GET[cls.name]})")
        return next((r for r in roots if _find(r, IDX_FILES["test"][0])), roots[0])

    @classmethod
    def check(cls, data_root):
        root = cls.root(data_root)
        for split in IDX_FILES.values():
            for stem in split:
                if _find(root, stem) is None:
                    raise ConfigError(
                        f"{cls.name}: {stem}[.gz] not found under {str(root)!r}; give "
                        f"--data-root, or install it ({_HOW_TO_GET[cls.name]})"
                    )

    def load(self, data_root):
        root = self.root(data_root)
        return (*load_idx_split(root, "train", self.name), *load_idx_split(root, "test", self.name))


@dataset_registry.register("fashion-mnist")
class FashionMnist(IdxData):
    description = "Fashion-MNIST 28x28 from IDX files (Debian's dataset-fashion-mnist by default)"
    default_roots = FASHION_ROOTS


@dataset_registry.register("mnist")
class Mnist(IdxData):
    description = "MNIST 28x28 from IDX files under --data-root"


class Stacked(ImageMetrics, Dataset):
    """Three independent random images of a 10-class base as the 3 channels: 1,000 modes."""

    primary_metric = "stacked_kl"
    primary_prefix = "stacked_kl"
    direction = "minimize"
    base_cls: type[ImageData]
    n_modes = 1000

    keep_samples = 64

    def __init__(self, device="cpu", data_root: str | None = None, **eval_options):
        self.base = self.base_cls(device, data_root, **eval_options)
        self.device = self.base.device

    @classmethod
    def check(cls, data_root):
        cls.base_cls.check(data_root)

    @classmethod
    def train_defaults(cls) -> dict:
        return cls.base_cls.train_defaults() | {"eval_samples": 26_000}

    @classmethod
    def model_defaults(cls) -> dict:
        return cls.base_cls.model_defaults() | {"channels": 3}

    def sample(self, n, generator):
        return to_unit(self.stack(self.base._train, n, generator))

    @staticmethod
    def stack(images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(images), (n, 3), generator=generator, device=images.device)
        return images[idx].squeeze(2)  # [n, 3, 1, H, W] -> [n, 3, H, W]

    def real_eval_images(self) -> torch.Tensor:
        return self.stack(self.base.test_x, len(self.base.test_x), torch.Generator().manual_seed(0))

    def evaluate(self, generate, n):
        from bench.metrics.images import evaluate_stacked

        return evaluate_stacked(self, generate, n)

    def describe(self):
        return {"modes": 1000, "base": self.base.name} | {
            k: v for k, v in self.base.describe().items() if k != "channels"
        }


def _stacked(base: type[ImageData]) -> type[Stacked]:
    name = f"stacked-{base.name}"
    text = f"3 random {base.name} images as RGB: 1,000 modes"
    cls = type(name, (Stacked,), {"base_cls": base, "__module__": __name__, "description": text})
    return dataset_registry.register(name)(cls)


for _base in (Digits, FashionMnist, Mnist):
    _stacked(_base)
