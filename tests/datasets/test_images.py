import gzip
import struct

import numpy as np
import pytest
import torch

from bench.datasets import create_dataset
from bench.datasets.files import read_idx
from bench.errors import ConfigError
from bench.rng import DATA, Streams
from bench.run import resolve
from bench.tensors import to_uint8, to_unit
from tests.data import fashion_mnist_root

pytestmark = pytest.mark.data_files  # rerun without system data (tests/test_data_absent.py)


def write_idx(path, array: np.ndarray, gz: bool) -> None:
    """The standard IDX layout: 0x0000, type 0x08 (ubyte), ndim, big-endian dims, data."""
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = head + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def tiny_idx_root(tmp_path, n_train=20, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    files = {"train": n_train, "t10k": n_test}
    for prefix, n in files.items():
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz)
    return tmp_path


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_data_sets_load_from_a_root_of_standard_files(name, gz, tmp_path):
    root = tiny_idx_root(tmp_path, gz=gz)
    data = create_dataset(name, data_root=str(root))
    assert data.train_x.shape == (20, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_y.tolist() == [i % 10 for i in range(10)]
    raw = read_idx(next(root.glob("train-images*")))
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(raw.copy()))
    batch = data.sample(8, Streams([0, 1], DATA))
    assert batch.shape == (2, 8, 1, 28, 28) and batch.min() >= -1 and batch.max() <= 1


def test_missing_idx_files_fail_before_training_and_say_how_to_get_them(tmp_path):
    with pytest.raises(ConfigError, match="images-idx3-ubyte.*apt-get install dataset-fashion"):
        resolve("fashion-mnist", [("none", {})], data_root=str(tmp_path))
    with pytest.raises(ConfigError, match="give --data-root"):
        resolve("mnist", [("none", {})])


def test_digits_are_uint8_8x8_with_a_fixed_split():
    data = create_dataset("digits")
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    assert data.train_x.dtype == torch.uint8 and int(data.train_x.max()) == 255
    assert torch.equal(create_dataset("digits").test_x, data.test_x)


def test_stacked_images_take_three_independent_base_images_as_channels():
    data = create_dataset("stacked-digits")
    x = data.stacks(data.base.train_x, 500, torch.Generator().manual_seed(1))
    assert x.shape == (500, 3, 8, 8) and x.dtype == torch.uint8
    base = {tuple(img.flatten().tolist()) for img in data.base.train_x[:, 0]}
    assert all(tuple(x[i, c].flatten().tolist()) in base for i in range(20) for c in range(3))
    same = (x[:, 0] == x[:, 1]).flatten(1).all(1).float().mean()
    assert same < 0.05  # independent draws, not one image repeated
    assert torch.equal(data.real_eval_images(), data.real_eval_images())


def test_quantisation_round_trips_real_pixels():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_uint8(to_unit(x)), x)


def test_image_runs_default_to_dcgan_models_and_their_own_eval_sizes():
    cfg = resolve("stacked-digits", [("none", {})])
    assert (cfg.model.kind, cfg.model.channels, cfg.model.image_size) == ("dcgan", 3, 8)
    assert cfg.train.eval_samples == 26_000
    assert resolve("digits", [("none", {})]).train.eval_samples == 10_000


def test_fashion_mnist_loads_from_the_debian_package():
    fashion_mnist_root()
    data = create_dataset("fashion-mnist")
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert sorted(data.test_y.unique().tolist()) == list(range(10))


def test_stacked_mnist_is_the_28x28_protocol_whenever_mnist_files_are_present():
    """Stacked MNIST as in PacGAN / VEEGAN: 26,000 generated samples against 10,000 held-out
    stacks of 28x28 images. MNIST's files are not on this machine; Fashion-MNIST's IDX files
    have MNIST's exact layout and sizes, so they stand in as the root given to `mnist`."""
    root = fashion_mnist_root()
    cfg = resolve("stacked-mnist", [("none", {})], data_root=root)
    assert cfg.train.eval_samples == 26_000
    assert (cfg.model.kind, cfg.model.channels, cfg.model.image_size) == ("dcgan", 3, 28)
    data = create_dataset("stacked-mnist", data_root=root)
    real = data.real_eval_images()
    assert real.shape == (10_000, 3, 28, 28) and real.dtype == torch.uint8
    assert data.sample(4, Streams([0], DATA)).shape == (1, 4, 3, 28, 28)
    assert data.caveat == "" and "stacked-mnist" in create_dataset("stacked-digits").caveat
