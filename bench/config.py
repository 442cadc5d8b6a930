"""Frozen run configuration: training recipe, model spec, methods; `flatten` for MLflow.

Config flows one way: CLI -> these dataclasses -> explicit constructor arguments. Every config
validates itself on construction, so bad input fails before anything is built or written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError
from bench.params import ROLES, param, to_text, validate

LOSSES = ("ns", "wasserstein", "hinge")
# gd: plain gradient descent (no momentum), the Dirac-GAN paper's setting; sgd is Nesterov
OPTIMIZERS = ("adam", "rmsprop", "sgd", "gd")


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe; defaults are the seed article's: NS-BCE, Adam 2e-4, betas (0.5, 0.999)."""

    steps: int = param(3000, low=1, help="generator updates")
    batch_size: int = param(256, low=1, help="samples per batch, real and generated")
    n_critic: int = param(1, low=1, help="discriminator updates per generator update")
    critic_schedule: str = param(
        "fixed", choices=("fixed", "wgan"),
        help="wgan: 100 critic updates at the first 25 generator steps and every 500th, "
        "n_critic otherwise (the WGAN paper's code)",
    )  # fmt: skip
    loss: str = param("ns", choices=LOSSES, help="adversarial loss (ns: non-saturating BCE)")
    optimizer: str = param(
        "adam", choices=OPTIMIZERS,
        help="optimizer of both networks (sgd: Nesterov, momentum beta1; gd: plain gradient "
        "descent, no momentum)",
    )  # fmt: skip
    # member=True: members of one population may differ in it (bench/optim.py: per-run rates)
    lr_g: float = param(2e-4, low=0.0, low_open=True, help="generator learning rate", member=True)
    lr_d: float = param(2e-4, low=0.0, low_open=True, help="discriminator learning rate",
                        member=True)  # fmt: skip
    lr_mult: float = param(
        1.0, low=0.0, low_open=True, member=True,
        help="multiplies both learning rates (a stress axis: the recipe's rates x this)",
    )  # fmt: skip
    # high_open: torch's Adam refuses a beta of 1 (and a momentum of 1 never forgets)
    beta1: float = param(0.5, low=0.0, high=1.0, high_open=True, member=True,
                         help="Adam beta1 / SGD momentum")  # fmt: skip
    beta2: float = param(0.999, low=0.0, high=1.0, high_open=True, member=True,
                         help="Adam beta2")  # fmt: skip
    amp: bool = param(False, help="mixed precision (bf16 autocast on CPU, fp16 on CUDA)")
    eval_every: int = param(500, low=1, help="evaluation interval (generator steps)")
    eval_samples: int = param(2500, low=10, help="generated samples per evaluation")
    log_every: int = param(100, low=1, help="statistics are read from the device this often")
    layer_stats_every: int = param(500, low=1, help="per-layer gradient statistics interval")
    stats: bool = param(True, help="collect gradient statistics")
    extractor: str = param("auto", choices=("auto", "inception", "cnn"), help="image metrics")
    inception_weights: str = param("", help="local inception-v3-compat weights file")
    recipe: str = param("shared", help="name of the recipe these values come from", cli=False)

    def __post_init__(self) -> None:
        validate(self, "train")
        if self.optimizer == "sgd" and self.beta1 == 0:
            raise ConfigError("train: beta1=0 is not allowed with sgd; Nesterov needs momentum > 0")


MODEL_KINDS = ("mlp", "pacgan", "dcgan", "dirac")
# Models of flat vectors (2-D data; dirac: the Dirac-GAN's point and linear critic); dcgan
# takes images.
VECTOR_KINDS = ("mlp", "pacgan", "dirac")


@dataclass(frozen=True)
class ModelSpec:
    """What G and D look like. Build-time switches (layer norm, spectral norm) name the roles."""

    kind: str = param("mlp", choices=MODEL_KINDS, cli=False)
    data_dim: int = param(2, low=1, help="MLP data dimension", cli=False)
    channels: int = param(1, low=1, help="DCGAN image channels", cli=False)
    image_size: int = param(0, low=0, help="DCGAN image side: 8, 16, 28, 32 or 64")
    z_dim: int = param(2, low=1, help="noise dimension")
    hidden: int = param(128, low=1, help="MLP width; DCGAN base channel count")
    d_capacity: float = param(1.0, low=0.0, low_open=True, help="D width relative to G")
    depth_g: int = param(3, low=1, help="hidden layers of G")
    depth_d: int = param(3, low=1, help="hidden layers of D")
    layer_norm: tuple[str, ...] = param((), choices=ROLES, cli=False)  # set by layer_norm
    spectral_norm: tuple[str, ...] = param((), choices=ROLES, cli=False)  # by spectral_norm
    sn_power_iterations: int = param(1, low=1, cli=False)

    def __post_init__(self) -> None:
        validate(self, "model")
        if self.kind == "dcgan" and self.image_size not in (8, 16, 28, 32, 64):
            raise ConfigError(
                f"model: image_size={self.image_size} is not allowed; allowed: 8, 16, 28, 32, 64"
            )


@dataclass(frozen=True)
class MethodSpec:
    """A method by registered name with its class and validated config (resolved once, by
    bench.run: this module looks nothing up in the registries)."""

    name: str
    config: Any
    cls: Any = field(compare=False, repr=False)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; the resolved values are logged with every result."""

    dataset: str
    methods: tuple[MethodSpec, ...]
    train: TrainConfig
    model: ModelSpec
    # torch.manual_seed takes up to 2**64 - 1; int64 keeps seeds exact in every store and frame
    seed: int = param(0, low=0, high=2**63 - 1, cli=False,
                      help="the run's seed: initialisation, data and noise streams")  # fmt: skip
    device: str = "cpu"
    data_root: str = ""  # image data sets: where their files are ("" = the default place)
    data_cls: Any = field(default=None, compare=False, repr=False)  # the dataset's class

    @property
    def metrics(self) -> tuple:
        """The metrics this run evaluates (declared by its data under its training config)."""
        return self.data_cls.declare_metrics(self.train)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (for the JSON summary and config.json)."""
        return {
            "dataset": self.dataset,
            "seed": self.seed,
            "device": self.device,
            "data_root": self.data_root,
            "methods": {m.name: dataclasses.asdict(m.config) for m in self.methods},
            "train": dataclasses.asdict(self.train),
            "model": dataclasses.asdict(self.model),
        }


def flatten(cfg: RunConfig) -> dict[str, str]:
    """Flat {key: text} params, e.g. `train.lr_g`, `method.norm_clip.max_norm` (MLflow params)."""
    flat = {"dataset": cfg.dataset, "seed": str(cfg.seed), "device": cfg.device,
            "data_root": cfg.data_root}  # fmt: skip
    flat["methods"] = ",".join(m.name for m in cfg.methods)
    for prefix, obj in (("train", cfg.train), ("model", cfg.model)):
        flat |= {f"{prefix}.{k}": to_text(v) for k, v in dataclasses.asdict(obj).items()}
    for m in cfg.methods:
        items = dataclasses.asdict(m.config).items()
        flat |= {f"method.{m.name}.{k}": to_text(v) for k, v in items}
    return flat
