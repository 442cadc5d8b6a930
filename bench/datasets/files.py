"""Image data sets read from their standard files: `fashion-mnist` and `mnist` (IDX), `cifar10`
(the python pickle batches), and the stacked 1,000-mode sets of the two grayscale ones.

Where the files are: `--data-root`, else the first default place that holds them (Debian's
`dataset-fashion-mnist` package, then `./data/<name>`, where `python -m bench fetch <name>`
downloads them through torchvision on a machine with internet). Nothing downloads during a run.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import pickle
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import torch

from bench.datasets.base import dataset_registry
from bench.datasets.images import ImageData, register_stacked
from bench.errors import ConfigError

DATA_DIR = Path("data")  # `fetch` downloads to DATA_DIR / name (relative to the working folder)


class FileData(ImageData):
    """Images in a standard on-disk format under a root folder."""

    system_roots: tuple[Path, ...] = ()  # searched before DATA_DIR / name
    torchvision_class = ""  # torchvision.datasets.<this> downloads the same files
    install_hint = ""  # another way to get the files, for the error message

    @classmethod
    def missing(cls, root: Path) -> str | None:
        """The first required file that is not under `root` (None when all are there)."""
        raise NotImplementedError

    @classmethod
    def read(cls, root: Path) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    @classmethod
    def root(cls, data_root: str | None) -> Path:
        """Where the files are; a one-line error that says how to get them when nowhere."""
        roots = (Path(data_root),) if data_root else (*cls.system_roots, DATA_DIR / cls.name)
        for r in roots:
            if cls.missing(r) is None:
                return r
        where = " or ".join(repr(str(r)) for r in roots)
        ways = [] if data_root else ["give --data-root"]
        target = f" --data-root {data_root}" if data_root else ""
        ways.append(f"run `python -m bench fetch {cls.name}{target}` on a machine with internet")
        if cls.install_hint:
            ways.append(cls.install_hint)
        raise ConfigError(
            f"{cls.name}: {cls.missing(roots[0])} not found under {where}; {', or '.join(ways)}"
        )

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        cls.root(cfg.data_root or None)

    def load(self, data_root):
        return self.read(self.root(data_root))

    @classmethod
    def fetch(cls, root: Path | None = None) -> Path:
        """Download the files through torchvision into `root` (default ./data/<name>, unless a
        default place holds them already); returns where they are."""
        if root is None:
            try:
                return cls.root(None)  # already in one of the default places
            except ConfigError:
                root = DATA_DIR / cls.name
        if cls.missing(root) is None:
            return root
        from bench.system import writable_dir

        if not writable_dir(root):
            raise ConfigError(f"fetch {cls.name}: {str(root)!r} is not writable")
        with _undone_on_failure(root):
            cls._download(root)
        return root

    @classmethod
    def _download(cls, root: Path) -> None:
        import torchvision.datasets

        source = getattr(torchvision.datasets, cls.torchvision_class)
        said = io.StringIO()  # torchvision prints to stdout, which carries our one JSON line
        try:
            with contextlib.redirect_stdout(said):
                for train in (True, False):
                    source(str(root), train=train, download=True)
            print(said.getvalue(), end="", file=sys.stderr)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; checksums: RuntimeError
            reason = " ".join(str(e).split())[:300]  # torchvision lists every mirror it tried
            raise ConfigError(
                f"fetch {cls.name}: download into {str(root)!r} failed ({reason}); on a machine "
                "without internet, copy the files there or give --data-root"
            ) from None
        if cls.missing(root) is not None:
            raise ConfigError(f"fetch {cls.name}: {cls.missing(root)} missing after download")


@contextlib.contextmanager
def _undone_on_failure(root: Path):
    """A download that fails (or is interrupted) leaves nothing behind: the folders it created
    are removed, and in a folder that was there, the entries it added."""
    created = root if not root.exists() else None
    while created is not None and not created.parent.exists():
        created = created.parent  # the topmost folder the download will create
    before = set(root.iterdir()) if root.is_dir() else set()
    try:
        yield
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif root.is_dir():
            for entry in set(root.iterdir()) - before:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        raise


# ---- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------------

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array: magic 0x0000 08 NDIM, big-endian dims.
    A truncated, corrupt or mislabelled file is a one-line ConfigError naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # truncated or corrupt gzip stream
        raise ConfigError(f"{str(path)!r} is truncated or corrupt ({e})") from None
    if len(data) < 4:
        raise ConfigError(f"{str(path)!r} is not an IDX file ({len(data)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
        raise ConfigError(f"{str(path)!r} is not an unsigned-byte IDX file (bad magic number)")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise ConfigError(f"{str(path)!r} is too short or too long: {len(data)} bytes where its "
                          f"header {dims} says {expected}")  # fmt: skip
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


_VERIFIED: set[tuple] = set()  # (path, size, mtime) of the files of each split read once


def verified(paths: tuple[Path, ...], check) -> None:
    """`check()` once per process for these files as they are now, so that bad files fail at
    resolve, before a run is created (and a suite's hundred runs read them once)."""
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    if key not in _VERIFIED:
        check()
        _VERIFIED.add(key)


def check_split(what: str, images: np.ndarray, labels: np.ndarray, shape: tuple[int, ...],
                n_classes: int) -> None:  # fmt: skip
    """Files that read fine may still hold the wrong thing: images of another size, more
    labels than images, labels outside the classes. One line naming the files and what was
    expected, before any run uses them."""
    if images.ndim != len(shape) + 1 or tuple(images.shape[1:]) != shape or not len(images):
        raise ConfigError(f"{what}: images of shape {tuple(images.shape)}; expected "
                          f"(N, {', '.join(map(str, shape))}) with N >= 1")  # fmt: skip
    if labels.ndim != 1 or len(labels) != len(images):
        raise ConfigError(f"{what}: {labels.shape[0] if labels.ndim else 0} labels for "
                          f"{len(images)} images; expected one label per image")  # fmt: skip
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ConfigError(f"{what}: labels from {labels.min()} to {labels.max()}; expected "
                          f"0 to {n_classes - 1}")  # fmt: skip


class IdxData(FileData):
    """The four IDX files, plain or gzipped, in the root, its `raw/`, or torchvision's
    `<Class>/raw/` layout."""

    @classmethod
    def _find(cls, root: Path, stem: str) -> Path | None:
        folders = (root, root / "raw", root / cls.torchvision_class / "raw")
        for folder in folders:
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
        return None

    @classmethod
    def missing(cls, root):
        stems = [s for split in IDX_FILES.values() for s in split]
        return next((f"{s}[.gz]" for s in stems if cls._find(root, s) is None), None)

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        root = cls.root(cfg.data_root or None)
        for stems in IDX_FILES.values():
            paths = tuple(cls._find(root, stem) for stem in stems)
            verified(paths, lambda paths=paths: cls._read_split(*paths))

    @classmethod
    def read(cls, root):
        out = []
        for stems in IDX_FILES.values():
            x, y = cls._read_split(*(cls._find(root, stem) for stem in stems))
            out += [torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))]
        return tuple(out)

    @classmethod
    def _read_split(cls, images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
        x, y = read_idx(images), read_idx(labels)
        what = f"{cls.name}: {str(images)!r} and {str(labels)!r}"
        check_split(what, x, y.astype(np.int64), (cls.size, cls.size), cls.n_classes)
        return x, y


@dataset_registry.register("fashion-mnist")
class FashionMnist(IdxData):
    description = "Fashion-MNIST 28x28 from IDX files (Debian's dataset-fashion-mnist by default)"
    system_roots = (Path("/usr/share/datasets/fashion-mnist"),)  # Debian's package
    torchvision_class = "FashionMNIST"
    install_hint = "apt-get install dataset-fashion-mnist"


@dataset_registry.register("mnist")
class Mnist(IdxData):
    description = "MNIST 28x28 from IDX files (--data-root, or fetched into ./data/mnist)"
    torchvision_class = "MNIST"


# ---- CIFAR-10 (python pickle batches) ----------------------------------------------------------

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_NUMPY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"),
                  ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"),
                  ("_codecs", "encode")}  # how protocol 2 spells bytes; harmless  # fmt: skip


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing else: a pickle can run any code,
    and a data file has no business doing so."""

    def find_class(self, module, name):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a data file")
        return getattr(importlib.import_module(module), name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 3, 32, 32], labels) of one CIFAR-10 python batch file: a dict with
    `data`, uint8 [N, 3072], and `labels`, N integers from 0 to 9."""
    with open(path, "rb") as f:
        try:
            batch = _ArraysOnly(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise ConfigError(f"{str(path)!r} is not a CIFAR-10 batch file ({e})") from None
    if not isinstance(batch, dict) or not {"data", "labels"} <= batch.keys():
        keys = sorted(map(str, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise ConfigError(f"{str(path)!r} is not a CIFAR-10 batch file: it holds {keys}, "
                          "expected a dict with 'data' and 'labels'")  # fmt: skip
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise ConfigError(f"{str(path)!r}: 'data' is not an array of bytes (uint8)")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise ConfigError(f"{str(path)!r}: 'labels' is not a list of integers") from None
    check_split(f"cifar10: {str(path)!r}", data, labels, (3 * 32 * 32,), 10)
    return data.reshape(-1, 3, 32, 32), labels


@dataset_registry.register("cifar10")
class Cifar10(FileData):
    description = "CIFAR-10 32x32 RGB from the python batches (--data-root or ./data/cifar10)"
    channels = 3
    size = 32
    torchvision_class = "CIFAR10"

    @classmethod
    def _folder(cls, root: Path) -> Path:
        return root / CIFAR_FOLDER if (root / CIFAR_FOLDER).is_dir() else root

    @classmethod
    def missing(cls, root):
        names = [n for files in CIFAR_FILES.values() for n in files]
        folder = cls._folder(root)
        return next((f"{CIFAR_FOLDER}/{n}" for n in names if not (folder / n).is_file()), None)

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        folder = cls._folder(cls.root(cfg.data_root or None))
        for name in (n for files in CIFAR_FILES.values() for n in files):
            path = folder / name
            verified((path,), lambda path=path: read_cifar_batch(path))

    @classmethod
    def read(cls, root):
        out = []
        for files in CIFAR_FILES.values():
            parts = [read_cifar_batch(cls._folder(root) / n) for n in files]
            out.append(torch.from_numpy(np.concatenate([x for x, _ in parts])))
            out.append(torch.from_numpy(np.concatenate([y for _, y in parts])))
        return tuple(out)


for _base in (FashionMnist, Mnist):  # grayscale bases only: each channel is one base image
    register_stacked(_base)
