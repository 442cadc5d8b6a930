"""Known-answer controls (issue 22, item 4): before a reader trusts the harness's own claims,
it reproduces what theory proves, on every one of several seeds.

(a) The Dirac-GAN (Mescheder, Geiger and Nowozin 2018; bench/datasets/dirac.py), trained with
plain gradient descent and alternating updates: unregularised training does not converge (the
Jacobian's eigenvalues at the equilibrium are purely imaginary), R1 does. Each seed starts at
its own point of the unit circle in (theta, psi).
(b) The Wasserstein loss without a constraint: nothing bounds the critic, so its outputs grow
without bound, while weight clipping and WGAN-GP keep them bounded.

Also here: the pieces the controls need, tested like the rest of the harness (the Dirac model
and the `gd` optimizer in populations equal ordinary runs in float64; seeded runs reproduce).
"""

import dataclasses
import math

import pytest
import torch

from bench.datasets.dirac import TOLERANCE
from bench.models import build_models
from bench.run import build_trainer, execute, execute_population, load_data, resolve
from tests.test_population import _check_equal, _configs, _train

SEEDS = (0, 1, 2, 3, 4)


def _dirac(method: str, params: dict | None = None, seeds=SEEDS, **train) -> list:
    """One population, one run per seed, of `method` on the Dirac-GAN's defaults."""
    cfgs = [resolve("dirac", [(method, params or {})], train, None, s, "cpu") for s in seeds]
    return execute_population(cfgs)


def _distances(result) -> list[float]:
    return [m["eval/distance"] for _, m in result.history if "eval/distance" in m]


def test_dirac_runs_start_at_different_points_of_the_unit_circle():
    cfg = resolve("dirac", [("none", {})])
    assert (cfg.model.kind, cfg.model.data_dim, cfg.model.z_dim) == ("dirac", 1, 1)
    assert cfg.train.optimizer == "gd" and cfg.train.loss == "ns"
    angles = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        g, d = build_models(cfg.model)
        theta, psi = g.out.theta.detach().item(), d.out.weight.detach().item()
        assert math.hypot(theta, psi) == pytest.approx(1.0)
        assert d.out.bias is None  # psi is D's only parameter
        angles.append(math.atan2(psi, theta))
    assert min(abs(a - b) for i, a in enumerate(angles) for b in angles[i + 1 :]) > 0.1


def test_the_harness_takes_the_papers_alternating_steps(float64):
    """The trainer's updates on the Dirac-GAN are the paper's, written out: D's gradient step on
    softplus(psi theta) + gamma / 2 psi^2 (NS loss, data at 0, R1), then G's on
    softplus(-psi theta) with the updated psi."""
    gamma, h, steps = 0.5, 0.1, 40
    cfg = resolve("dirac", [("r1", {"gamma": gamma})], {"steps": steps}, None, 2)
    trainer = build_trainer([cfg], load_data(cfg))
    theta, psi = trainer.G.out.theta.item(), trainer.D.out.weight.item()
    trainer.fit_all()
    for _ in range(steps):
        psi -= h * (theta / (1 + math.exp(-psi * theta)) + gamma * psi)
        theta += h * psi / (1 + math.exp(psi * theta))
    assert trainer.G.out.theta.item() == pytest.approx(theta, rel=1e-12, abs=1e-15)
    assert trainer.D.out.weight.item() == pytest.approx(psi, rel=1e-12, abs=1e-15)


def test_dirac_gan_without_regularisation_does_not_converge():
    """Alternating gradient descent keeps circling the equilibrium: on every seed the
    generator is off the data at the end and still swings widely in the last evaluations."""
    for result in _dirac("none"):
        assert result.status == "finished"
        assert result.metrics["eval/converged"] == 0.0
        assert max(_distances(result)[-5:]) > 100 * TOLERANCE


def test_dirac_gan_with_r1_converges():
    """R1 at gamma = 1 (critical damping of the linearised dynamics, gamma = 2 f'(0) for the
    non-saturating loss): every seed reaches the equilibrium and stays there."""
    for result in _dirac("r1", {"gamma": 1.0}):
        assert result.status == "finished"
        assert result.metrics["eval/converged"] == 1.0
        assert max(_distances(result)[-3:]) < TOLERANCE


# The WGAN-GP paper's recipe (Adam 1e-4, betas (0.5, 0.9), five critic updates per generator
# update) at ten times its rate, for every method alike: only the constraint differs, and the
# unconstrained critic runs away within 100 generator steps.
WGAN_TRAIN = {"loss": "wasserstein", "optimizer": "adam", "lr_g": 1e-4, "lr_d": 1e-4,
              "beta1": 0.5, "beta2": 0.9, "n_critic": 5, "lr_mult": 10.0, "steps": 100,
              "batch_size": 64, "log_every": 10, "eval_every": 100, "eval_samples": 200,
              "layer_stats_every": 100}  # fmt: skip
CRITIC_BOUND = 5.0  # mean |D(x)|: a 1-Lipschitz critic on ring8's scale stays near 1


def _critic_outputs(method: str) -> list[list[float]]:
    """Per seed, the logged mean |D(x)| over real and fake batches through training."""
    params = {} if method == "none" else {"use_recipe": False}
    cfgs = [resolve("ring8", [(method, params)], WGAN_TRAIN, {"hidden": 32}, s, "cpu")
            for s in SEEDS]  # fmt: skip
    return [[m["d/abs"] for _, m in r.history if "d/abs" in m] for r in execute_population(cfgs)]


def test_an_unconstrained_wasserstein_critic_grows_without_bound():
    for outputs in _critic_outputs("none"):
        assert outputs[-1] > CRITIC_BOUND and outputs[-1] > 20 * outputs[0]


@pytest.mark.parametrize("method", ["weight_clip", "wgan_gp"])
def test_weight_clipping_and_the_gradient_penalty_keep_the_critic_bounded(method):
    for outputs in _critic_outputs(method):
        assert max(outputs) < CRITIC_BOUND


def test_dirac_population_equals_ordinary_runs_in_float64(float64):
    """Members with their own seeds (initial points), step sizes (the stress axis: `gd` per
    run) and R1 weights equal the ordinary runs."""
    cfgs = [resolve("dirac", [("r1", {"gamma": g})], {"steps": 150, "lr_mult": m,
                                                      "log_every": 10, "eval_every": 50},
                    None, s)
            for s, g, m in zip(SEEDS, (0.3, 1.0, 3.0, 10.0, 1.0), (1.0, 3.0, 0.5, 1.0, 10.0),
                               strict=True)]  # fmt: skip
    t, _ = _train(cfgs)
    assert type(t.roles["discriminator"].opt).__name__ == "PerRunOptimizer"
    _check_equal(cfgs, 1e-8)


def test_gd_members_at_their_own_learning_rates_equal_ordinary_runs(float64):
    """`gd` (plain gradient descent) per run on an MLP: every parameter shape."""
    cfgs = []
    for c, mult in zip(_configs("norm_clip", 60), (1.0, 3.0, 0.5, 10.0), strict=True):
        train = dataclasses.replace(c.train, optimizer="gd", lr_g=0.01, lr_d=0.01, lr_mult=mult)
        cfgs.append(dataclasses.replace(c, train=train))
    t, _ = _train(cfgs)
    assert type(t.roles["generator"].opt).__name__ == "PerRunOptimizer"
    _check_equal(cfgs, 1e-8)


def test_a_seeded_dirac_run_reproduces_exactly():
    first, second = (execute(resolve("dirac", [("none", {})], {"steps": 200}, None, 3))
                     for _ in range(2))  # fmt: skip
    assert first.history == second.history and first.metrics == second.metrics
