import math

import pytest
import torch

import bench.trainer as trainer_mod
from bench.config import ModelSpec
from bench.datasets import create_dataset
from bench.members import Population
from bench.methods import Method, MethodConfig
from bench.models import build_models
from bench.run import execute
from bench.trainer import Trainer
from tests.conftest import tiny_config


class Spy(Method):
    """Records each hook call into a shared log and checks what the gradients look like."""

    name = "spy"
    config_cls = MethodConfig

    def __init__(self, log):
        super().__init__()
        self.log = log
        self.seen_norms = []

    def loss(self, terms, ctx):
        self.log.append(("loss", ctx.role))
        return terms

    def after_backward(self, ctx):
        self.log.append(("after_backward", ctx.role))
        grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
        self.seen_norms.append(float(torch.nn.utils.get_total_norm(grads)))
        return {}

    def after_step(self, ctx):
        self.log.append(("after_step", ctx.role))
        return {}


def _trainer(methods, amp=False, steps=2, n_critic=1, **train):
    torch.manual_seed(0)
    g, d = build_models(ModelSpec(hidden=8))
    cfg = tiny_config(steps=steps, n_critic=n_critic, amp=amp, **train).train
    return Trainer(Population.one(g, d, cfg, z_dim=2), create_dataset("ring8"), methods, cfg)


def test_hooks_run_in_order_around_unscale_and_step(monkeypatch):
    log = []
    spy = Spy(log)
    trainer = _trainer([spy], n_critic=2)
    orig_unscale = torch.amp.GradScaler.unscale_
    monkeypatch.setattr(
        torch.amp.GradScaler,
        "unscale_",
        lambda s, opt: (log.append(("unscale", None)), orig_unscale(s, opt))[1],
    )
    for role in trainer.roles.values():
        orig_step = role.opt.step
        role.opt.step = lambda *a, _o=orig_step, **k: (log.append(("step", None)), _o(*a, **k))[1]
    trainer.fit()

    def one_update(role):
        return [("loss", role), ("unscale", None), ("after_backward", role), ("step", None),
                ("after_step", role)]  # fmt: skip

    per_step = one_update("discriminator") * 2 + one_update("generator")
    assert log == per_step * 2


def test_hooks_get_an_explicit_context_whose_state_the_trainer_keeps_per_role():
    class Counter(Method):
        name = "counter"
        config_cls = MethodConfig

        def after_backward(self, ctx):
            ctx.state["n"] = ctx.state.get("n", 0) + 1
            assert ctx.params and len(ctx.grads) == len(ctx.params)
            assert ctx.runs == 1 and ctx.stats and ctx.norms is trainer.norms
            steps.append((ctx.role, ctx.step))
            return {}

    steps = []
    trainer = _trainer([Counter()], steps=3, n_critic=2)
    trainer.fit()
    d, g = (trainer.roles[r].hooks[0][1] for r in ("discriminator", "generator"))
    assert d.state == {"n": 6} and g.state == {"n": 3} and d.model is trainer.D
    assert steps[:3] == [("discriminator", 0), ("discriminator", 0), ("generator", 0)]


def test_hooks_see_unscaled_gradients_under_amp():
    ref, amp = Spy([]), Spy([])
    _trainer([ref], amp=False, steps=1).fit()
    t = _trainer([amp], amp=True, steps=1)
    assert t.roles["discriminator"].scaler.get_scale() == 2.0**16
    t.fit()
    # With a scale of 65536 still applied the norms would be ~1e4 times larger.
    for a, b in zip(amp.seen_norms, ref.seen_norms, strict=True):
        assert a == pytest.approx(b, rel=0.1)


def test_only_targeted_roles_get_hooks():
    log = []
    spy = Spy(log)
    spy.config = MethodConfig(targets=("discriminator",))
    _trainer([spy], steps=1).fit()
    assert {role for _, role in log} == {"discriminator"}


def test_same_seed_gives_identical_metrics_and_history():
    a = execute(tiny_config([("autoclip", {})], seed=3))
    b = execute(tiny_config([("autoclip", {})], seed=3))
    c = execute(tiny_config([("autoclip", {})], seed=4))
    assert a.metrics == b.metrics and a.history == b.history
    assert a.history != c.history


def test_divergence_is_a_result_with_its_step():
    cfg = tiny_config(lr_g=1e30, lr_d=1e30, steps=60, log_every=5)
    result = execute(cfg)
    assert result.status == "diverged"
    assert result.diverged_step is not None and result.diverged_step < result.steps <= 60
    assert result.steps % 5 == 0  # detected at the logging interval, not by a per-step sync
    assert result.metrics["eval/modes"] == 0 or math.isnan(result.metrics["eval/reverse_kl"])


def test_statistics_are_logged_per_role_with_uniform_keys():
    result = execute(tiny_config([("norm_clip", {"max_norm": "0.001"})]))
    logged = result.history[0][1]
    for role in ("generator", "discriminator"):
        assert logged[f"clip/{role}/rate"] == 1.0
        assert logged[f"grad/{role}/norm_post"] == pytest.approx(1e-3, rel=1e-2)
        assert logged[f"grad/{role}/norm_pre"] > 1e-3
        assert f"method/norm_clip/{role}/frac_clipped" in logged
    assert any(k.startswith("layer/discriminator/") for k in logged)
    none = execute(tiny_config())
    assert none.history[0][1]["clip/generator/rate"] == 0.0
    generic = {k for k in logged if not k.startswith("method/")}
    assert generic == set(none.history[0][1])


def test_statistics_off_logs_only_losses():
    result = execute(tiny_config([("norm_clip", {})], stats=False))
    keys = set(result.history[0][1])
    assert keys == {"loss/generator", "loss/discriminator"}


@pytest.mark.parametrize("loss", ["ns", "wasserstein", "hinge"])
@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_every_loss_and_optimizer_trains(loss, optimizer):
    result = execute(tiny_config(loss=loss, optimizer=optimizer, steps=3, log_every=3))
    assert result.status == "finished"


def test_counts_discriminator_updates_per_generator_step(monkeypatch):
    calls = []
    orig = trainer_mod.Trainer._update
    monkeypatch.setattr(
        trainer_mod.Trainer,
        "_update",
        lambda self, role, *a: (calls.append(role), orig(self, role, *a))[1],
    )
    execute(tiny_config(n_critic=3, steps=2))
    assert calls == (["discriminator"] * 3 + ["generator"]) * 2


def test_evaluations_happen_every_eval_every_steps_whatever_the_log_interval():
    result = execute(tiny_config(steps=12, eval_every=3, log_every=5))
    evals = [step for step, logged in result.history if "eval/modes" in logged]
    assert evals == [3, 6, 9, 12]
    assert [s for s, m in result.history if "loss/generator" in m] == [3, 5, 6, 9, 10, 12]


class NormProbe(Method):
    """Runs after a clipper and measures the gradients the optimizer will see."""

    name = "norm_probe"
    config_cls = MethodConfig

    def __init__(self):
        super().__init__()
        self.measured = []

    def after_backward(self, ctx):
        grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
        self.measured.append(torch.nn.utils.get_total_norm(grads))
        return {}


@pytest.mark.parametrize("method", ["norm_clip", "autoclip", "zclip"])
def test_shared_norms_measure_what_the_optimizer_gets(method, monkeypatch):
    """Clippers hand their post-clip norm to the trainer instead of it measuring again; the
    logged pre/post norms must equal a direct measurement of the same gradients."""
    from bench.methods import create_method

    stats = {"pre": [], "post": []}
    real_add = trainer_mod.DeviceStats.add

    def spy(self, key, value, step):
        for which in stats:
            if key == f"grad/discriminator/norm_{which}":
                stats[which].append(float(value))
        real_add(self, key, value, step)

    monkeypatch.setattr(trainer_mod.DeviceStats, "add", spy)
    params = {
        "norm_clip": {"max_norm": 0.05},
        "zclip": {"warmup": 2, "z_thresh": 0.5, "max_norm": 0.05},
    }
    clipper = create_method(method, **params.get(method, {}))
    probe = NormProbe()
    trainer = _trainer([clipper, probe], steps=8)
    raw = []
    real_after = type(clipper).after_backward

    def measure_first(self, ctx):
        if ctx.role == "discriminator":
            grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
            raw.append(float(torch.nn.utils.get_total_norm(grads)))
        return real_after(self, ctx)

    monkeypatch.setattr(type(clipper), "after_backward", measure_first)
    trainer.fit()
    seen = [float(n) for n in probe.measured[::2]]  # discriminator first, then generator
    assert stats["pre"] == pytest.approx(raw, rel=1e-5)
    assert stats["post"] == pytest.approx(seen, rel=1e-5)
    assert any(post < pre * 0.99 for pre, post in zip(raw, seen, strict=True))  # it clipped


def test_grad_norms_cache_notices_in_place_edits():
    from bench.metrics.gradients import GradNorms

    grads = [torch.ones(3), torch.ones(4)]
    norms = GradNorms()
    first = norms.norm(grads)
    assert norms.norm(grads) is first  # unchanged gradients: no second measurement
    grads[0].mul_(2.0)
    assert float(norms.norm(grads)) == pytest.approx(math.sqrt(12 + 4))
    post = norms.scale_to(grads, norms.norm(grads), 1.0)
    assert norms.norm(grads) is post and float(post) == pytest.approx(1.0, rel=1e-5)
    assert float(torch.nn.utils.get_total_norm(grads)) == pytest.approx(1.0, rel=1e-5)
    norms.new_update()
    assert norms.norm(grads) is not post


def test_weight_clip_recipe_runs_the_wgan_critic_schedule(monkeypatch):
    """WGAN's code: 100 critic updates for the first 25 generator steps and every 500th."""
    calls = []
    real = Trainer._d_step
    monkeypatch.setattr(Trainer, "_d_step", lambda self: calls.append(self.step) or real(self))
    cfg = tiny_config([("weight_clip", {})], steps=30, eval_every=30, batch_size=8)
    assert cfg.train.critic_schedule == "wgan" and cfg.train.n_critic == 5
    execute(cfg)
    assert len(calls) == 25 * 100 + 5 * 5
    assert tiny_config([("weight_clip", {"use_recipe": False})]).train.critic_schedule == "fixed"


def test_statistics_whose_float32_mean_overflows_are_not_read_as_non_finite():
    """A member blowing up with finite float32 values larger than float32's max / n: their
    mean in float32 is inf, but no value is non-finite (this crashed the flush)."""
    from bench.stats import DeviceStats

    s = DeviceStats(2)
    for step in range(4):
        s.add("loss/discriminator", torch.tensor([3e38, 1.0]), step)
    (first, second), bad = s.flush(watch=("loss/",))
    assert bad == [None, None] and first["loss/discriminator"] == pytest.approx(3e38, rel=1e-6)
