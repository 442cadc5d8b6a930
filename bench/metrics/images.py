"""Image metrics computed by torch-fidelity (no Frechet distance written here): FD/FID, KID and
precision/recall between generated images and the held-out split, plus the stacked-data mode
count.

Feature extractors: `inception-v3-compat` when its weights can be had (a given file, the file
`make weights` converts (bench/metrics/inception.py), or torch-fidelity's download cache); the
base data set's CNN classifier registered with torch-fidelity always. A metric is called `fid`
only with Inception; the CNN's carry the extractor's name (`fd_digits_cnn`, `kid_digits_cnn`,
...) and stay as extra columns beside Inception's, since they cost little. Generated images are
quantised to uint8 exactly like the real ones, generated and featurised in batches (never all at
once), and the real split's features are cached per (data set, split, extractor, sample count).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from bench.errors import ConfigError
from bench.metrics.base import Metric
from bench.metrics.classifier import load_or_train
from bench.metrics.inception import weights_file
from bench.tensors import UnsafeFile, digest, to_uint8, to_unit, weights_only_loading

CACHE_DIR = Path("runs/fidelity-cache")
INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's download name
_NETS: dict[str, tuple[nn.Module, bool]] = {}  # extractor name -> (classifier, per channel)


def _extractor_class():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class CnnFeatures(FeatureExtractorBase):
        """A base-data classifier's 128-d feature layer; per channel (concatenated) for stacked
        images. Takes uint8 [B, C, H, W] like every torch-fidelity extractor."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            self.net, self.per_channel = _NETS[name]

        @staticmethod
        def get_provided_features_list():
            return ("features",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "features"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        @torch.no_grad()
        def forward(self, x):
            x = to_unit(x.to(next(self.net.parameters()).device))
            if self.per_channel:
                feats = torch.cat(
                    [self.net.features(x[:, c : c + 1]) for c in range(x.shape[1])], 1
                )
            else:
                feats = self.net.features(x)
            return (feats.float(),)

    return CnnFeatures


def cache_root() -> Path:
    return CACHE_DIR


def register_cnn(name: str, net: nn.Module, per_channel: bool) -> None:
    """Make `net` available to torch-fidelity as feature extractor `name`."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    _NETS[name] = (net, per_channel)
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, _extractor_class())


def converted_weights() -> Path:
    """Where `make weights` puts the converted file: beside the other caches, so a test session
    that moves the caches away (tests/conftest.py) moves this too, and tests use Inception only
    when they ask for it (it costs about 0.3 s per image on a CPU core)."""
    return weights_file(cache_root().parent)


def inception_weights(explicit: str | None) -> str | None:
    """A usable Inception weights file: the given one, the converted one, or torch-fidelity's
    download cache; each checked to hold plain tensors before any run."""
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"inception weights {explicit!r} not found")
        check_weights_file(explicit)
        return explicit
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    for path in (converted_weights(), hub):
        if path.is_file():
            check_weights_file(str(path))
            return str(path)
    return None


def check_weights_file(path: str) -> None:
    """Refuse, before any run, a weights file that is not a plain state dict (a pickle that
    would run code); memory-mapped, so checking a 100 MB file costs little."""
    try:
        with weights_only_loading():
            torch.load(path, map_location="cpu", mmap=True)
    except UnsafeFile as e:
        raise ConfigError(f"inception weights: refusing to load {e}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise ConfigError(f"inception weights {path!r} cannot be read ({e})") from None


def choose_extractor(classifier_name: str, choice: str, weights: str | None):
    """(torch-fidelity extractor name, metric suffix, weights path or None)."""
    if choice not in ("auto", "inception", "cnn"):
        raise ConfigError(f"extractor {choice!r} is unknown; choose one of: auto, inception, cnn")
    # `auto` takes Inception only where it is affordable or asked for: on CPU it costs about
    # 0.2 s an image (one core), so a 10,000-sample evaluation at every checkpoint would take
    # hours; there `--extractor inception` or `--inception-weights FILE` asks for it.
    affordable = choice == "inception" or weights is not None or torch.cuda.is_available()
    found = inception_weights(weights) if choice != "cnn" and affordable else None
    if choice == "inception" and found is None:
        raise ConfigError(
            "Inception weights are not available offline; give --inception-weights PATH "
            f"(torch-fidelity's {INCEPTION_FILE}) or use --extractor cnn"
        )
    if found is not None:
        if choice == "auto":
            print(f"image metrics: Inception-v3 weights found at {found}: reporting FID",
                  file=sys.stderr)  # fmt: skip
        return INCEPTION, "", found
    return classifier_name, "_" + classifier_name.replace("-", "_"), None


class _Uint8(nn.Module):
    """G's output quantised like real images: [-1, 1] -> uint8, 3 channels for Inception."""

    def __init__(self, module: nn.Module, rgb: bool):
        super().__init__()
        self.module, self.rgb = module, rgb

    def forward(self, z):
        x = to_uint8(self.module(z))
        return x.expand(-1, 3, -1, -1) if self.rgb and x.shape[1] == 1 else x


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, rgb: bool):
        self.images, self.rgb = images, rgb

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return x.expand(3, -1, -1) if self.rgb and x.shape[0] == 1 else x


def fidelity_metrics(sampler, real: torch.Tensor, n: int, extractor: str, suffix: str,
                     weights: str | None, cache_name: str) -> dict[str, float]:  # fmt: skip
    """FD, KID and precision/recall of `n` generated images against `real` (uint8)."""
    import torch_fidelity

    rgb = extractor == INCEPTION
    model = torch_fidelity.GenerativeModelModuleWrapper(
        _Uint8(sampler.module, rgb), sampler.z_dim, "normal", 0
    )
    was_training = sampler.module.training
    kwargs = {"feature_extractor_weights_path": weights} if weights else {}
    try:
        with weights_only_loading():
            out = torch_fidelity.calculate_metrics(
            input1=model, input1_model_num_samples=n, input2=_Images(real, rgb),
                input2_cache_name=cache_name, cache_root=str(cache_root()), cache=True,
                cuda=sampler.device.type == "cuda", batch_size=min(500, n), fid=True, kid=True,
                prc=True, prc_batch_size=1000,  # 10k x 10k distance blocks would need ~2 GiB
                feature_extractor=extractor, kid_subset_size=min(1000, n, len(real)),
                rng_seed=sampler.seed, save_cpu_ram=True, verbose=False, **kwargs,
            )  # fmt: skip
    except UnsafeFile as e:
        raise ConfigError(
            f"refusing to load {e}: delete it (a cache is rebuilt) or give a plain state-dict file"
        ) from None
    finally:
        sampler.module.train(was_training)
    fd_name = "fid" if extractor == INCEPTION else "fd"
    return {
        f"{fd_name}{suffix}": out["frechet_inception_distance"],
        f"kid{suffix}": out["kernel_inception_distance_mean"],
        f"precision{suffix}": out["precision"],
        f"recall{suffix}": out["recall"],
    }


def _classifier(data):
    net, acc, _ = load_or_train(data)
    name = f"{data.name}-cnn"
    return net, acc, name


def evaluate_images(data, sampler, n: int) -> dict[str, float]:
    """Inception's metrics when chosen, the CNN's always (extra columns then: they are cheap),
    the classifier's accuracy and the class histogram of the generated images."""
    extractor, _, weights = data.features
    net, acc, name = _classifier(data)  # CNN features and class labels
    register_cnn(name, net, per_channel=False)
    real = data.real_eval_images()
    out = {"classifier_accuracy": acc}
    for ex in (INCEPTION, name) if extractor == INCEPTION else (name,):
        cache = f"{data.name}-test-{ex}-{len(real)}-{digest(real)}"
        suffix = "" if ex == INCEPTION else suffix_for(name)
        out |= fidelity_metrics(sampler, real, n, ex, suffix, weights if ex == INCEPTION
                                else None, cache)  # fmt: skip
    batches = (to_uint8(x) for x in sampler.batches(n, batch=2000))
    out |= class_histogram(net, batches, class_frequencies(data.train_y, data.n_classes))
    return out


@torch.no_grad()
def class_histogram(net: nn.Module, batches, reference: torch.Tensor) -> dict[str, float]:
    """Classes the classifier finds among generated uint8 images, and KL(p_hat || reference)
    of its labels (natural log): dropping classes, or piling onto a few, raises it."""
    counts = torch.zeros(len(reference), dtype=torch.float64)
    for x in batches:
        labels = net(to_unit(x)).argmax(1).cpu()
        counts += torch.bincount(labels, minlength=len(reference)).double()
    p = counts / counts.sum()
    seen = p > 0
    kl = float((p[seen] * torch.log(p[seen] / reference[seen])).sum())
    return {"classes": int(seen.sum()), "class_kl": kl}


def class_frequencies(labels: torch.Tensor, k: int) -> torch.Tensor:
    counts = torch.bincount(labels.long(), minlength=k).double()
    return counts / counts.sum()


@torch.no_grad()
def stacked_modes(net: nn.Module, batches, n_modes: int = 1000) -> dict[str, float]:
    """Modes covered (of 1,000) and KL(p_hat || uniform), natural log, from uint8 batches."""
    counts = torch.zeros(n_modes, dtype=torch.float64)
    for x in batches:
        x = to_unit(x)
        digits = [net(x[:, c : c + 1]).argmax(1).cpu() for c in range(3)]
        mode = digits[0] * 100 + digits[1] * 10 + digits[2]
        counts += torch.bincount(mode, minlength=n_modes).double()
    p = counts[counts > 0] / counts.sum()
    return {"modes": int((counts > 0).sum()),
            "stacked_kl": float((p * torch.log(n_modes * p)).sum())}  # fmt: skip


def evaluate_stacked(data, sampler, n: int) -> dict[str, float]:
    net, acc, name = _classifier(data.base)
    out = stacked_modes(net, (to_uint8(x) for x in sampler.batches(n, batch=2000)))
    register_cnn(f"stacked-{name}", net, per_channel=True)
    real = data.real_eval_images()
    cache = f"{data.name}-test-stacked-{name}-{len(real)}-{digest(real)}"
    out |= fidelity_metrics(sampler, real, n, f"stacked-{name}",
                            "_" + f"stacked_{name}".replace("-", "_"), None, cache)  # fmt: skip
    out["classifier_accuracy"] = acc
    return out


def settle_extractor(choice: str, weights: str | None) -> str:
    """`auto` decided once, at resolve time: "inception" when its weights can be had, else
    "cnn"; an explicit choice is checked."""
    found = choose_extractor("cnn", choice, weights)[0] == INCEPTION
    return "inception" if found else "cnn"


def suffix_for(classifier_name: str) -> str:
    return "_" + classifier_name.replace("-", "_")


def fidelity_declarations(suffix: str, inception: bool, compute) -> list[Metric]:
    """FD (FID with Inception), KID, precision and recall, computed together by `compute`."""
    if inception:
        fd = Metric("fid", "min", "Frechet Inception distance to the held-out test images "
                    "(Inception-v3 pool features, torch-fidelity)", compute=compute,
                    needs="sampler")  # fmt: skip
    else:
        fd = Metric(f"fd{suffix}", "min", f"Frechet distance in the feature space of "
                    f"`{suffix[1:]}` (the data's own CNN classifier): not an Inception FID, "
                    "never comparable with published FIDs", compute=compute,
                    needs="sampler")  # fmt: skip
    return [
        fd,
        Metric(f"kid{suffix}", "min", "kernel inception distance (polynomial-kernel MMD, mean "
               "over subsets of up to 1,000), same features as the FD", primary=True),
        Metric(f"precision{suffix}", "max", "k-NN manifold precision (Kynkaanniemi et al. "
               "2019): fraction of generated samples inside the real manifold", pareto=True),
        Metric(f"recall{suffix}", "max", "k-NN manifold recall: fraction of real samples "
               "inside the generated manifold", pareto=True),
    ]  # fmt: skip


def accuracy_declaration() -> Metric:
    return Metric("classifier_accuracy", "max", "test accuracy of the classifier that gives "
                  "the features and mode labels (metrics are only as good as it)",
                  table=False)  # fmt: skip


def class_declarations() -> list[Metric]:
    return [
        Metric("classes", "max", "classes the data's CNN classifier finds among the generated "
               "images (of the data's classes)"),
        Metric("class_kl", "min", "KL(p_hat || p_data) of the classifier's labels of generated "
               "images against the training set's class frequencies (natural log): mode "
               "dropping raises it, whatever the image quality"),
    ]  # fmt: skip


def image_declarations(data_name: str, extractor: str) -> tuple[Metric, ...]:
    """FID, KID (primary), precision and recall in the chosen features; with Inception the
    CNN's four follow as extra columns (no primary, no sweep objective)."""
    cnn = suffix_for(f"{data_name}-cnn")
    if extractor != "inception":
        out = fidelity_declarations(cnn, False, evaluate_images)
    else:
        extra = [replace(m, compute=None, primary=False, pareto=False)
                 for m in fidelity_declarations(cnn, False, None)]  # fmt: skip
        out = [*fidelity_declarations("", True, evaluate_images), *extra]
    return (*out, *class_declarations(), accuracy_declaration())


def stacked_declarations(base_name: str) -> tuple[Metric, ...]:
    name = f"stacked-{base_name}-cnn"
    modes = Metric("modes", "max", "distinct classifier-label triples among generated samples "
                   "(of 1,000)", compute=evaluate_stacked, needs="sampler")  # fmt: skip
    kl = Metric("stacked_kl", "min", "KL(p_hat || uniform) of the 1,000-mode label histogram "
                "(natural log)", primary=True)  # fmt: skip
    fid = [replace(m, compute=None, primary=False) for m in
           fidelity_declarations(suffix_for(name), False, None)]  # fmt: skip
    return (modes, kl, *fid, accuracy_declaration())
