"""`imagefolder`: any folder of images (`--data-root PATH`), resized to the model's image size.

Layout: each subfolder is a class (`root/cat/*.png`, `root/dog/**/*.jpg`); images lying directly
in the root form one more class. When the root holds `train/` and `test/` folders, those are the
splits (each laid out as above); otherwise a fixed seeded 80/20 split. Every image is converted to
RGB and fitted to a square of `--image-size` pixels (default 32): centre crop to the square, then
a bicubic resize (PIL's `ImageOps.fit`).

The offline metrics' feature extractor is a CNN trained on the classes, so it needs at least two
of them; a folder of one class needs Inception weights (`--inception-weights PATH`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.datasets.base import dataset_registry
from bench.datasets.images import ImageData
from bench.errors import ConfigError
from bench.tensors import digest

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MIN_IMAGES = 10


def _images(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in EXTENSIONS and p.is_file())


def scan(root: Path) -> dict[str, list[Path]]:
    """{class name: image files}: one class per subfolder (searched recursively), plus "." for
    images directly in `root`; classes without images are left out."""
    classes = {d.name: _images(d, True) for d in sorted(root.iterdir()) if d.is_dir()}
    classes["."] = _images(root, False)
    return {k: v for k, v in classes.items() if v}


def splits(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{"train": classes, "test": classes}, or {"all": classes} when there are no split folders."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return {"train": scan(root / "train"), "test": scan(root / "test")}
    return {"all": scan(root)}


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime) of images decoded once


def verify_images(paths: list[Path]) -> None:
    """Decode every image once (per process), so a corrupt file is a one-line error before a
    run is created, not a failed run after its data were half loaded."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in _VERIFIED:
            continue
        try:
            with Image.open(path) as img:
                img.load()
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
            raise ConfigError(
                f"imagefolder: {str(path)!r} cannot be read as an image ({e}); remove or replace it"
            ) from None
        _VERIFIED.add(key)


def read_image(path: Path, size: int) -> np.ndarray:
    """uint8 [3, size, size]: RGB, centre-cropped to a square and resized."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.fit(img.convert("RGB"), (size, size), Image.Resampling.BICUBIC)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"imagefolder: {str(path)!r} cannot be read as an image ({e})") from None
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


@dataset_registry.register("imagefolder")
class ImageFolder(ImageData):
    description = "any folder of images (--data-root), one subfolder per class, resized"
    channels = 3
    size = 32  # default side; --image-size picks another

    @classmethod
    def check(cls, cfg) -> None:
        from bench.metrics.images import inception_weights

        if not cfg.data_root:
            raise ConfigError("imagefolder: give --data-root PATH (a folder of images, one "
                              "subfolder per class)")  # fmt: skip
        root = Path(cfg.data_root)
        if not root.is_dir():
            raise ConfigError(f"imagefolder: --data-root {str(root)!r} is not a folder")
        groups = splits(root)
        for split, classes in groups.items():
            n = sum(len(v) for v in classes.values())
            if n < MIN_IMAGES:
                raise ConfigError(
                    f"imagefolder: {n} images in {split!r} under {str(root)!r}; at least "
                    f"{MIN_IMAGES} needed ({', '.join(sorted(EXTENSIONS))})"
                )
        names = {c for classes in groups.values() for c in classes}
        verify_images([p for classes in groups.values() for ps in classes.values() for p in ps])
        train = cfg.train
        has_inception = train.extractor != "cnn" and inception_weights(
            train.inception_weights or None
        )
        if len(names) < 2 and not has_inception:
            raise ConfigError(
                f"imagefolder: {str(root)!r} holds one class; the offline metrics need a "
                "classifier of at least 2 classes (one subfolder each), or give "
                "--inception-weights PATH"
            )

    def load(self, data_root):
        groups = splits(Path(data_root))
        self.classes = sorted({c for classes in groups.values() for c in classes})
        self.n_classes = len(self.classes)
        self.root = str(data_root)
        x, y = {}, {}
        for split, classes in groups.items():
            x[split], y[split] = self._read(classes)
        if "all" not in x:
            return x["train"], y["train"], x["test"], y["test"]
        perm = torch.randperm(len(x["all"]), generator=torch.Generator().manual_seed(0))
        train, test = perm[: int(0.8 * len(perm))], perm[int(0.8 * len(perm)) :]
        return x["all"][train], y["all"][train], x["all"][test], y["all"][test]

    def _read(self, classes: dict[str, list[Path]]) -> tuple[torch.Tensor, torch.Tensor]:
        files = [(p, self.classes.index(c)) for c, paths in classes.items() for p in paths]
        bar = tqdm(files, desc="imagefolder", disable=len(files) < 2000, file=sys.stderr,
                   leave=False)  # fmt: skip
        x = np.stack([read_image(p, self.image_size) for p, _ in bar])
        return torch.from_numpy(x), torch.tensor([c for _, c in files], dtype=torch.int64)

    def describe(self):
        return super().describe() | {"root": self.root, "digest": digest(self.train_x)}
