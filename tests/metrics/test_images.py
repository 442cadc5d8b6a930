"""Image metrics: torch-fidelity parity, Inception path offline, stacked mode count, the CNN."""

import copy
import math
from unittest import mock

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

import bench.metrics.images as images
from bench.datasets import create_dataset
from bench.metrics.base import evaluate, primary
from bench.metrics.classifier import accuracy, load_or_train
from bench.tensors import to_uint8
from bench.trainer import Sampler


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def test_digits_classifier_is_accurate_and_cached(digits):
    net, acc, _ = load_or_train(digits)
    assert acc >= 0.97 and accuracy(net, digits.test_x, digits.test_y) == acc
    again, acc2, trained = load_or_train(digits)
    assert not trained and acc2 == acc  # the second evaluation trains nothing
    for a, b in zip(net.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


class Recorder(nn.Module):
    """A fixed feature map (8 pixel statistics) that keeps every feature batch it computed."""

    seen: list = []

    def features(self, x):
        regions = [x, x[:, :, :4], x[:, :, 4:], x[..., :4], x[..., 4:], x[:, :, 2:6]]
        stats = [r.mean((1, 2, 3)) for r in regions] + [x.std((1, 2, 3)), x.amax((1, 2, 3))]
        f = torch.stack(stats, dim=1).double() * 10
        Recorder.seen.append(f.float())
        return f

    def parameters(self, recurse=True):
        return iter([torch.zeros(1)])


def _generator():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))


def test_fd_and_kid_equal_torch_fidelity_functions_and_scipy_on_the_same_features(digits):
    Recorder.seen = []
    images.register_cnn("recorder", Recorder(), per_channel=False)
    sampler = Sampler(_generator(), 16, torch.device("cpu"), seed=5)
    real = digits.test_x[:300]
    out = images.fidelity_metrics(sampler, real, 400, "recorder", "_rec", None, "parity-300")
    fake, ref = torch.cat(Recorder.seen[:1]), torch.cat(Recorder.seen[1:])
    assert len(fake) == 400 and len(ref) == 300
    s1, s2 = fid_features_to_statistics(fake.double()), fid_features_to_statistics(ref.double())
    assert out["fd_rec"] == pytest.approx(fid_statistics_to_metric(s1, s2, False)[
        "frechet_inception_distance"], rel=1e-5)  # fmt: skip
    f1, f2 = fake.double().numpy(), ref.double().numpy()
    covmean = linalg.sqrtm(np.cov(f1, rowvar=False) @ np.cov(f2, rowvar=False)).real
    direct = ((f1.mean(0) - f2.mean(0)) ** 2).sum() + np.trace(
        np.cov(f1, rowvar=False) + np.cov(f2, rowvar=False) - 2 * covmean
    )
    assert out["fd_rec"] == pytest.approx(direct, rel=1e-5)
    kid = kid_features_to_metric(fake, ref, kid_subset_size=300, rng_seed=5, verbose=False)
    assert out["kid_rec"] == pytest.approx(kid["kernel_inception_distance_mean"], rel=1e-5)
    # The whole sets as one subset: the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3
    x, y = f1[:300], f2
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m = 300
    mmd = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    single = kid_features_to_metric(fake[:300], ref, kid_subset_size=300, kid_subsets=1,
                                    verbose=False)["kernel_inception_distance_mean"]  # fmt: skip
    assert single == pytest.approx(mmd, rel=1e-5)
    assert 0 <= out["precision_rec"] <= 1 and 0 <= out["recall_rec"] <= 1


def test_reference_features_are_cached_per_split_extractor_and_count(digits):
    images.register_cnn("recorder", Recorder(), per_channel=False)
    sampler = Sampler(_generator(), 16, torch.device("cpu"), seed=5)
    for _ in range(2):
        Recorder.seen = []
        images.fidelity_metrics(sampler, digits.test_x[:200], 100, "recorder", "", None, "c-200")
    assert sum(len(b) for b in Recorder.seen) == 100  # the second call featurised only fakes


@pytest.fixture(scope="module")
def stand_in_weights(tmp_path_factory):
    """A file in the real weights' format (torch-fidelity's state dict), random values."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda *a: None), \
            mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: None):  # fmt: skip
        stand_in = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("stand-in") / images.INCEPTION_FILE
    torch.save(stand_in.state_dict(), path)
    return path


def test_inception_path_runs_offline_with_a_stand_in_weights_file(stand_in_weights, digits):
    path = stand_in_weights
    name, suffix, weights = images.choose_extractor("digits-cnn", "auto", str(path))
    assert (name, suffix, weights) == ("inception-v3-compat", "", str(path))
    sampler = Sampler(_generator(), 16, torch.device("cpu"), seed=1)
    out = images.fidelity_metrics(sampler, digits.test_x[:12], 12, name, suffix, weights, "inc")
    assert set(out) == {"fid", "kid", "precision", "recall"} and math.isfinite(out["fid"])
    cnn = images.choose_extractor("digits-cnn", "auto", None)
    assert cnn[:2] == ("digits-cnn", "_digits_cnn")  # no weights: never called FID


def test_with_inception_the_cnn_metrics_stay_as_extra_columns(stand_in_weights, digits):
    data = copy.copy(digits)  # 12 held-out images: Inception costs ~0.3 s per image on a core
    data.features = images.choose_extractor("digits-cnn", "auto", str(stand_in_weights))
    data.real_eval_images = lambda: digits.test_x[:12]
    sampler = Sampler(_generator(), 16, torch.device("cpu"), seed=1)
    out = images.evaluate_images(data, sampler, 12)
    declared = images.image_declarations("digits", "inception")
    assert set(out) == {m.name for m in declared}
    assert {"fid", "kid", "fd_digits_cnn", "kid_digits_cnn", "classifier_accuracy"} <= set(out)
    assert [m.name for m in declared if m.primary] == ["kid"]
    assert out["fid"] != out["fd_digits_cnn"] and all(math.isfinite(v) for v in out.values())


def test_stacked_mode_count_real_data_and_collapsed_generator():
    data = create_dataset("stacked-digits")
    net, acc, _ = load_or_train(data.base)
    gen = torch.Generator().manual_seed(0)
    real = (data.stacks(data.base.test_x, 2000, gen) for _ in range(13))  # 26,000 samples
    m = images.stacked_modes(net, real)
    assert m["modes"] >= 990 and m["stacked_kl"] < 0.1
    const = (data.base.test_x[0].expand(2000, 3, 8, 8).contiguous() for _ in range(13))
    m = images.stacked_modes(net, const)
    assert m["modes"] == 1 and m["stacked_kl"] == pytest.approx(math.log(1000))


def test_generated_images_are_quantised_like_real_ones():
    q = images._Uint8(nn.Identity(), rgb=True)(torch.tensor([[[[-1.0, 0.0, 1.0]]]]))
    assert q.dtype == torch.uint8 and q.shape == (1, 3, 1, 3)
    assert torch.equal(q[0, 0, 0], to_uint8(torch.tensor([-1.0, 0.0, 1.0])))


class _Payload:
    """What a planted pickle does when loaded: create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_planted_pickles_in_weights_or_cache_are_refused_never_run(tmp_path, digits):
    from bench.errors import ConfigError

    evil, marker = tmp_path / "weights.pth", tmp_path / "pwned"
    torch.save({"w": _Payload(marker)}, evil)
    with pytest.raises(ConfigError, match="refusing to load"):
        images.choose_extractor("digits-cnn", "inception", str(evil))
    assert not marker.exists()

    images.register_cnn("recorder", Recorder(), per_channel=False)
    sampler = Sampler(_generator(), 16, torch.device("cpu"), seed=1)
    images.fidelity_metrics(sampler, digits.test_x[:50], 20, "recorder", "", None, "planted")
    cached = sorted(images.cache_root().glob("planted*.pt"))
    assert cached  # the reference features and statistics, cached by torch-fidelity
    images.fidelity_metrics(sampler, digits.test_x[:50], 20, "recorder", "", None, "planted")
    for path in cached:  # someone with write access to runs/ plants code in the cache
        torch.save(_Payload(marker), path)
    with pytest.raises(ConfigError, match="refusing to load"):
        images.fidelity_metrics(sampler, digits.test_x[:50], 20, "recorder", "", None, "planted")
    assert not marker.exists()


def test_class_histogram_of_real_images_and_of_a_collapsed_generator(digits):
    net, _, _ = load_or_train(digits)
    ref = images.class_frequencies(digits.train_y, 10)
    real = images.class_histogram(net, [digits.test_x], ref)
    assert real["classes"] == 10 and real["class_kl"] < 0.05
    one = images.class_histogram(net, [digits.test_x[:1].expand(300, -1, -1, -1)], ref)
    label = int(net(images.to_unit(digits.test_x[:1])).argmax())
    assert one["classes"] == 1 and one["class_kl"] == pytest.approx(-math.log(float(ref[label])))


def test_replayed_images_reach_the_metrics_unchanged(digits):
    """Reference rows go through the metric code as a generator that replays fixed images."""
    x = digits.test_x[:7]
    sampler = digits.replay(x)
    assert torch.equal(to_uint8(sampler.module(torch.zeros(5, 1))), x[:5])
    assert torch.equal(to_uint8(sampler.module(torch.zeros(4, 1))), x[[5, 6, 0, 1]])
    assert torch.equal(to_uint8(sampler(7)), x)


@pytest.mark.parametrize("name", ["digits", "stacked-digits"])
def test_image_reference_rows_order_data_before_noise_before_collapse(name):
    data = create_dataset(name)
    n = 1000
    rows = {label: evaluate(data, data.metrics, data.replay(x), n)
            for label, x in data.references(n, seed=0).items()}  # fmt: skip
    key = primary(data.metrics).name
    assert rows["data"][key] < rows["uniform noise"][key] < rows["one mode"][key]
    fd = next(k for k in rows["data"] if k.startswith("fd"))
    assert rows["data"][fd] < rows["uniform noise"][fd]
    count = "modes" if "modes" in rows["data"] else "classes"
    assert rows["one mode"][count] == 1 < rows["uniform noise"][count]
    assert rows["uniform noise"][count] < rows["data"][count] or count == "classes"
