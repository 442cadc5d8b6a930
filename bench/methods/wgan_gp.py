"""WGAN-GP: gradient penalty lambda * E[(||grad D(x_hat)|| - 1)^2] on random interpolates.

Gulrajani, Ahmed, Arjovsky, Dumoulin and Courville 2017, "Improved Training of Wasserstein GANs"
(arXiv 1704.00028), Algorithm 1: x_hat = a x_real + (1 - a) x_fake, a ~ U[0, 1] per sample,
lambda = 10, with Wasserstein loss, n_critic 5, Adam lr 1e-4, betas (0.5, 0.9) and no batch norm
in the critic. That recipe is applied by default (`train.recipe = wgan_gp`).
"""

from dataclasses import dataclass

from bench.methods.base import Method, MethodConfig, register_method
from bench.methods.r1 import input_gradient
from bench.params import Search, param


@dataclass(frozen=True)
class WganGpConfig(MethodConfig):
    targets: tuple[str, ...] = param(("discriminator",), choices=("discriminator",))
    weight: float = param(10.0, low=0.0, low_open=True, search=Search(1e-1, 1e2), help="lambda")
    use_recipe: bool = param(True, help="Wasserstein loss, n_critic 5, Adam 1e-4 (0.5, 0.9)")


@register_method
class WganGp(Method):
    config_cls = WganGpConfig
    family = "penalty"
    PER_RUN = True
    RECIPE = {"loss": "wasserstein", "optimizer": "adam", "lr_g": 1e-4, "lr_d": 1e-4,
              "beta1": 0.5, "beta2": 0.9, "n_critic": 5, "recipe": "wgan_gp"}  # fmt: skip

    def loss(self, terms, ctx):
        real, fake = ctx.real.detach(), ctx.fake.detach()
        a = ctx.rand(real.shape[1], *(1,) * (real.ndim - 2))  # one per sample, [K, B, 1...]
        grad = input_gradient(ctx.discriminator, a * real + (1 - a) * fake)
        weight = self.per_run(ctx, "weight")
        return terms | {"gp": weight * (grad.norm(dim=2) - 1).pow(2).mean(1)}
