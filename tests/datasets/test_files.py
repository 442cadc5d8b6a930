"""CIFAR-10, image folders and `fetch`, on tiny files the tests write in the real formats."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import bench.datasets.files as files
from bench.__main__ import main
from bench.datasets import create_dataset
from bench.errors import ConfigError
from bench.run import resolve
from tests.datasets.test_images import tiny_idx_root

pytestmark = pytest.mark.data_files  # rerun without system data (tests/test_data_absent.py)


def write_cifar(folder, n=4):
    """The python version's layout: pickled dicts with a uint8 [N, 3072] `data` row-major as
    (3, 32, 32), a `labels` list, and the metadata keys the real batches carry."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        batch = {
            "batch_label": f"batch {k}",
            "labels": [(k + i) % 10 for i in range(n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img_{k}_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_loads_the_python_batches(tmp_path, nested):
    folder = write_cifar(tmp_path / "cifar-10-batches-py" if nested else tmp_path)
    data = create_dataset("cifar10", data_root=str(tmp_path))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_y.tolist()[:4] == [0, 1, 2, 3]
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f)
    first = raw["data"][0]
    red, green = first[:1024].reshape(32, 32), first[1024:2048].reshape(32, 32)
    assert np.array_equal(data.train_x[0, 0].numpy(), red)  # channel-major rows, as documented
    assert np.array_equal(data.train_x[0, 1].numpy(), green)
    cfg = resolve("cifar10", [("none", {})], data_root=str(tmp_path))
    assert (cfg.model.channels, cfg.model.image_size) == (3, 32)


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(ConfigError, match="is not a CIFAR-10 batch file.*builtins.print"):
        create_dataset("cifar10", data_root=str(tmp_path))


def test_missing_cifar10_says_how_to_get_it(tmp_path):
    with pytest.raises(ConfigError, match="data_batch_1 not found.*bench fetch cifar10"):
        resolve("cifar10", [("none", {})], data_root=str(tmp_path))


def write_folder(root, classes=("cat", "dog"), n=8, size=(40, 30)):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            colour = (255 * (c == 0), 40 * i % 256, 255 * (c == 1))
            suffix = ".png" if i % 2 else ".JPG"
            Image.new("RGB", size, colour).save(root / name / f"{i}{suffix}", quality=100)
    return root


def test_imagefolder_reads_classes_resizes_and_splits(tmp_path):
    root = write_folder(tmp_path / "pets")
    Image.new("L", (10, 50), 128).save(root / "loose.png")  # a class of its own: "."
    (root / "notes.txt").write_text("not an image")
    data = create_dataset("imagefolder", data_root=str(root), image_size=16)
    assert data.classes == [".", "cat", "dog"] and data.n_classes == 3
    assert len(data.train_x) + len(data.test_x) == 17 and len(data.test_x) == 4
    assert data.train_x.shape[1:] == (3, 16, 16) and data.train_x.dtype == torch.uint8
    pngs = [img for img, lab in zip(data.train_x, data.train_y, strict=True) if lab == 1]
    assert all(int(img[0].min()) == 255 and int(img[2].max()) == 0 for img in pngs)  # red cats
    again = create_dataset("imagefolder", data_root=str(root), image_size=16)
    assert torch.equal(again.test_x, data.test_x)  # the split is fixed


def test_imagefolder_uses_train_and_test_folders_when_present(tmp_path):
    write_folder(tmp_path / "train", n=6)
    write_folder(tmp_path / "test", n=5)
    data = create_dataset("imagefolder", data_root=str(tmp_path), image_size=8)
    assert (len(data.train_x), len(data.test_x)) == (12, 10)
    assert data.test_y.tolist() == [0] * 5 + [1] * 5


def test_imagefolder_resolves_with_the_chosen_size_and_checks_its_input(tmp_path):
    root = write_folder(tmp_path / "pets")
    cfg = resolve("imagefolder", [("none", {})], model={"image_size": 64}, data_root=str(root))
    assert (cfg.model.channels, cfg.model.image_size) == (3, 64)
    with pytest.raises(ConfigError, match="give --data-root"):
        resolve("imagefolder", [("none", {})])
    with pytest.raises(ConfigError, match="is not a folder"):
        resolve("imagefolder", [("none", {})], data_root=str(tmp_path / "nope"))
    few = write_folder(tmp_path / "few", n=2)
    with pytest.raises(ConfigError, match="4 images.*at least 10"):
        resolve("imagefolder", [("none", {})], data_root=str(few))
    one = write_folder(tmp_path / "one", classes=("cat",), n=12)
    with pytest.raises(ConfigError, match="one class.*--inception-weights"):
        resolve("imagefolder", [("none", {})], data_root=str(one))
    with pytest.raises(ConfigError, match="image_size=20 is not allowed"):
        resolve("imagefolder", [("none", {})], model={"image_size": 20}, data_root=str(root))


def test_fixed_size_data_refuse_another_image_size():
    with pytest.raises(ConfigError, match="digits: image_size=16 is not allowed.*8 px"):
        resolve("digits", [("none", {})], model={"image_size": 16})


class FakeMNIST:
    """Stands in for torchvision.datasets.MNIST(root, train, download=True): writes the IDX
    files where torchvision puts them (ROOT/MNIST/raw), no network."""

    calls = []

    def __init__(self, root, train, download):
        from pathlib import Path

        self.calls.append((root, train, download))
        tiny_idx_root((Path(root) / "MNIST" / "raw").resolve(), gz=False)


def test_fetch_downloads_through_torchvision_into_data(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(files, "DATA_DIR", files.Path("data"))  # the default, even when hidden
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    (tmp_path / "data" / "mnist" / "MNIST" / "raw").mkdir(parents=True)
    assert main(["fetch", "stacked-mnist"]) == 0
    assert json.loads(capsys.readouterr().out)["data_root"] == "data/mnist"
    assert [c[1:] for c in FakeMNIST.calls] == [(True, True), (False, True)]
    data = create_dataset("mnist")  # found in ./data/mnist without --data-root
    assert data.train_x.shape == (20, 1, 28, 28)
    assert main(["fetch", "mnist"]) == 0 and len(FakeMNIST.calls) == 2  # already there


def test_fetch_without_internet_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import urllib.error

    import torchvision.datasets

    def offline(root, train, download):
        raise RuntimeError("Error downloading x:\nTried https://example, got:\n<urlopen error>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    assert main(["fetch", "cifar10", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fetch cifar10: download into" in err and "Tried" in err

    def no_dns(root, train, download):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_dns)
    assert main(["fetch", "cifar10", "--data-root", str(tmp_path)]) == 2
    assert main(["fetch", "digits"]) == 2
    err = capsys.readouterr().err
    assert "Name or service not known" in err
    assert "fetchable: cifar10, fashion-mnist, mnist" in err


def test_stacked_data_exist_only_for_grayscale_bases():
    from bench.datasets import dataset_registry

    names = dataset_registry.names()
    assert {"stacked-digits", "stacked-mnist", "stacked-fashion-mnist"} <= set(names)
    assert "stacked-cifar10" not in names and "stacked-imagefolder" not in names
    if files.FashionMnist.system_roots:  # empty under --without-system-data
        assert files.FashionMnist.system_roots == (files.Path("/usr/share/datasets/fashion-mnist"),)
