"""Each method against an independent reference: torch's own functions, hand-computed examples,
direct autograd."""

import math

import pytest
import torch
from torch import nn

from bench.config import ModelSpec
from bench.methods import LossContext, UpdateContext, create_method
from bench.methods.agc import agc_, unit_dim
from bench.models import build_models
from bench.population import Single
from bench.rng import METHOD, Streams


def _model_with_grads(seed=0, scale=1.0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    (model(torch.randn(16, 4)).pow(2).sum() * scale).backward()
    return model


def _clone(model):
    clone = _model_with_grads()
    clone.load_state_dict(model.state_dict())
    for p, q in zip(clone.parameters(), model.parameters(), strict=True):
        p.grad = q.grad.clone()
    return clone


@pytest.mark.parametrize("c", [1e-3, 0.05, 10.0])
def test_value_clip_equals_torch_clip_grad_value(c):
    model = _model_with_grads()
    ref = _clone(model)
    torch.nn.utils.clip_grad_value_(ref.parameters(), c)
    stats = create_method("value_clip", clip_value=c).after_backward(
        UpdateContext.of("generator", model)
    )
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0)
    assert 0 <= float(stats["frac_clipped"]) <= 1


@pytest.mark.parametrize("tau", [1e-2, 1.0, 1e3])
def test_norm_clip_equals_torch_clip_grad_norm(tau):
    model = _model_with_grads(scale=5.0)
    ref = _clone(model)
    torch.nn.utils.clip_grad_norm_(ref.parameters(), tau)
    stats = create_method("norm_clip", max_norm=tau).after_backward(
        UpdateContext.of("generator", model)
    )
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    assert float(stats["frac_clipped"]) == (1.0 if tau < 1e3 else 0.0)


def test_norm_clip_layer_scope_clips_each_module_on_its_own():
    model = _model_with_grads(scale=5.0)
    ref = _clone(model)
    for layer in (ref[0], ref[2]):
        torch.nn.utils.clip_grad_norm_(layer.parameters(), 0.5)
    create_method("norm_clip", max_norm=0.5, scope="layer").after_backward(
        UpdateContext.of("generator", model)
    )
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


def _agc_case(module, weight, grad):
    with torch.no_grad():
        module.weight.copy_(weight)
    module.weight.grad = grad.clone()
    # One run: a leading run dim on the weight and its gradient (views), units one dim right.
    w, g = module.weight[None], module.weight.grad[None]
    agc_(w, g, unit_dim(module) + 1, clipping=0.1, eps=1e-3)
    return module.weight.grad


def test_agc_linear_unitwise_hand_computed():
    # Unit 0: ||W_0|| = 5, ||G_0|| = 1 > 0.1 * 5 -> scaled to 0.5. Unit 1: ||G_1|| = 0.1 <= 0.1 * 5.
    w = torch.tensor([[3.0, 4.0], [0.0, 5.0]])
    g = torch.tensor([[0.6, 0.8], [0.1, 0.0]])
    out = _agc_case(nn.Linear(2, 2), w, g)
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.4], [0.1, 0.0]]))


def test_agc_uses_eps_for_zero_weights():
    # ||W_0|| = 0 -> max(0, 1e-3) * 0.1 = 1e-4 is the cap for a gradient of norm 1.
    out = _agc_case(nn.Linear(2, 1), torch.zeros(1, 2), torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(out, torch.tensor([[0.6e-4, 0.8e-4]]))


def test_agc_conv2d_units_are_output_channels():
    conv = nn.Conv2d(1, 2, kernel_size=1)  # weight [out=2, in=1, 1, 1]
    w = torch.tensor([1.0, 10.0]).view(2, 1, 1, 1)
    g = torch.tensor([1.0, 1.0]).view(2, 1, 1, 1)
    out = _agc_case(conv, w, g)  # unit 0 capped at 0.1; unit 1 cap 1.0 is not exceeded
    torch.testing.assert_close(out.flatten(), torch.tensor([0.1, 1.0]))


def test_agc_conv_transpose2d_units_are_dim_1():
    deconv = nn.ConvTranspose2d(2, 2, kernel_size=1)  # weight [in=2, out=2, 1, 1]
    assert unit_dim(deconv) == 1
    w = torch.tensor([[3.0, 0.0], [4.0, 10.0]]).view(2, 2, 1, 1)  # out unit 0: (3, 4) -> 5
    g = torch.tensor([[0.6, 0.0], [0.8, 0.5]]).view(2, 2, 1, 1)  # out unit 0: (0.6, 0.8) -> 1
    out = _agc_case(deconv, w, g).view(2, 2)
    # Unit 0 (column 0) exceeds 0.5 and is scaled by 0.5; unit 1 (0, 0.5) <= 1.0 is untouched.
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.0], [0.4, 0.5]]))
    # Grouping by dim 0 instead would have scaled row 1 -- the bug this guards against.


def test_agc_excludes_discriminator_output_layer_by_name():
    _, d = build_models(ModelSpec(hidden=8))
    d(torch.randn(4, 2)).sum().mul(1e3).backward()
    before = d.out.weight.grad.clone()
    create_method("agc", clipping=1e-3).after_backward(UpdateContext.of("discriminator", d))
    torch.testing.assert_close(d.out.weight.grad, before)
    assert d.body.fc0.weight.grad.norm() < 1e-2 * d.body.fc0.weight.norm() + 1e-6


def _run_norm_sequence(method, norms, role="generator", state=None):
    """Feed a model whose gradient norms follow `norms`; return the clipped norms. `state`:
    the method's state for the role (the trainer owns it; here the caller may keep it)."""
    p = nn.Parameter(torch.zeros(2))
    model = nn.Module()
    model.p = p
    out = []
    ctx = UpdateContext.of(role, model, state={} if state is None else state)
    for n in norms:
        p.grad = torch.tensor([0.6 * n, 0.8 * n])
        method.after_backward(ctx)
        out.append(float(p.grad.norm()))
    return out


def test_autoclip_matches_hand_traced_percentiles():
    norms = [1.0, 3.0, 2.0, 10.0]
    # Histories [1], [1,3], [1,3,2], [1,3,2,10]; 50th percentile by linear interpolation:
    expected_thresholds = [1.0, 2.0, 2.0, 2.5]
    out = _run_norm_sequence(create_method("autoclip", percentile=50.0), norms)
    expected = [min(n, t * n / (n + 1e-6)) for n, t in zip(norms, expected_thresholds, strict=True)]
    assert out == pytest.approx(expected, rel=1e-5)


def test_autoclip_window_forgets_old_norms():
    out = _run_norm_sequence(
        create_method("autoclip", percentile=100.0, window=2), [9.0, 1.0, 1.0, 5.0]
    )
    # 100th percentile of the last two norms: 9, 9, 1, 5 -> the third step is clipped to 1.
    assert out == pytest.approx([9.0, 1.0, 1.0, 5.0], rel=1e-5)
    out = _run_norm_sequence(create_method("autoclip", percentile=50.0, window=2), [1.0, 1.0, 9.0])
    assert out[2] == pytest.approx(5.0, rel=1e-5)  # median of [1, 9]


def test_zclip_matches_hand_traced_sequence():
    cfg = dict(warmup=3, alpha=0.5, z_thresh=1.0)
    norms = [1.0, 2.0, 3.0, 10.0, 2.0]
    out = _run_norm_sequence(create_method("zclip", **cfg), norms)
    mean, var = 2.0, 2.0 / 3.0  # warm-up statistics of [1, 2, 3] (population variance)
    std = math.sqrt(var)
    z = (10.0 - mean) / (std + 1e-6)  # > 1: clip to mean + z_thr^2 std / z
    clipped = mean + std / z
    assert out[:3] == pytest.approx([1.0, 2.0, 3.0])
    assert out[3] == pytest.approx(clipped, rel=1e-5)
    mean = 0.5 * mean + 0.5 * clipped  # EMA updated with the clipped norm, mean first
    var = 0.5 * var + 0.5 * (clipped - mean) ** 2
    z = (2.0 - mean) / (math.sqrt(var) + 1e-6)
    expected = mean + math.sqrt(var) / z if z > 1.0 else 2.0
    assert out[4] == pytest.approx(expected, rel=1e-5)


def test_zclip_cap_is_an_explicit_option():
    out = _run_norm_sequence(create_method("zclip", warmup=2), [5.0, 5.0, 5.0])
    assert out == pytest.approx([5.0, 5.0, 5.0])  # pure ZClip: no silent cap at 1.0
    out = _run_norm_sequence(create_method("zclip", warmup=2, max_norm=1.0), [5.0, 5.0])
    assert out == pytest.approx([1.0, 1.0], rel=1e-5)


def test_an_overflowing_step_does_not_poison_adaptive_thresholds():
    """Under AMP a step's norm can be inf (the scaler then skips it); the history must not
    keep it."""
    out = _run_norm_sequence(create_method("autoclip", percentile=50.0), [1.0, math.inf, 3.0])
    assert out[2] == pytest.approx(2.0, rel=1e-5)  # median of [1, 3]; inf ignored
    m, state = create_method("zclip", warmup=3, alpha=0.5), {}
    out = _run_norm_sequence(m, [1.0, math.inf, 3.0, math.inf, 2.0], state=state)
    c = state["clipper"]
    # warm-up of [1, 3]: mean 2, variance 1; the step of norm 2 halves the variance
    assert float(c.mean) == pytest.approx(2.0) and float(c.var) == pytest.approx(0.5)
    assert out[4] == pytest.approx(2.0, rel=1e-5)


def test_clippers_keep_separate_state_per_role():
    """One method instance serves both roles; each role's state lives in its own context."""
    m, d_state, g_state = create_method("autoclip", percentile=50.0), {}, {}
    _run_norm_sequence(m, [1.0, 1.0], role="discriminator", state=d_state)
    out = _run_norm_sequence(m, [100.0], role="generator", state=g_state)
    assert out == pytest.approx([100.0], rel=1e-5)  # a pooled history [1, 1, 100] would clip to 1
    assert d_state["history"].count == 2 and g_state["history"].count == 1


def test_weight_clip_keeps_weights_inside_c_after_every_step():
    import bench.trainer as trainer_mod
    from bench.run import execute
    from tests.conftest import tiny_config

    c = 0.02
    seen = []
    orig = trainer_mod.Trainer._update

    def spy(self, role, terms, ctx):
        orig(self, role, terms, ctx)
        if role == "discriminator":
            seen.append(max(float(p.detach().abs().max()) for p in self.D.parameters()))

    trainer_mod.Trainer._update = spy
    try:
        execute(tiny_config([("weight_clip", {"clip_value": str(c)})], steps=4))
    finally:
        trainer_mod.Trainer._update = orig
    assert len(seen) == 4 * 100 and max(seen) <= c  # WGAN's schedule: 100 critic steps early


def _layers(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


def test_layer_norm_layers_exist_exactly_when_switched_on():
    g, d = build_models(ModelSpec(hidden=8, depth_d=3))
    assert not _layers(g, nn.LayerNorm) and not _layers(d, nn.LayerNorm)
    spec = _configured("layer_norm", ModelSpec(hidden=8, depth_d=3))
    g, d = build_models(spec)
    assert len(_layers(d, nn.LayerNorm)) == 3 and not _layers(g, nn.LayerNorm)
    assert not isinstance(d.out, nn.LayerNorm)
    spec = _configured("layer_norm", spec, targets=("generator", "discriminator"))
    assert len(_layers(build_models(spec)[0], nn.LayerNorm)) == 3


def test_spectral_norm_exists_exactly_when_switched_on():
    from torch.nn.utils import parametrize

    g, d = build_models(ModelSpec(hidden=8))
    assert not any(parametrize.is_parametrized(m) for m in d.modules())
    g, d = build_models(_configured("spectral_norm", ModelSpec(hidden=8)))
    linears = _layers(d, nn.Linear)
    assert linears and all(parametrize.is_parametrized(m, "weight") for m in linears)
    assert not any(parametrize.is_parametrized(m) for m in g.modules())
    # After power iterations the normalised weight has spectral norm about 1.
    for _ in range(30):
        d(torch.randn(4, 2))
    d.eval()
    sigma = torch.linalg.matrix_norm(d.body.fc1.weight.detach(), ord=2)
    assert float(sigma) == pytest.approx(1.0, rel=1e-2)


def _ctx(d, seed=0):
    """A one-run loss context: [1, B, 2] tensors and D viewed as a one-member population."""
    torch.manual_seed(seed)
    real, fake = torch.randn(1, 8, 2), torch.randn(1, 8, 2)
    return LossContext(real, fake, Single(d), Streams([7], METHOD))


def test_r1_penalty_equals_direct_autograd():
    _, d = build_models(ModelSpec(hidden=8))
    ctx = _ctx(d)
    terms = create_method("r1", gamma=3.0).loss({}, ctx)
    x = ctx.real[0].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    expected = 3.0 / 2 * (grad**2).sum(dim=1).mean()
    torch.testing.assert_close(terms["r1"], expected.reshape(1))
    terms["r1"].backward()  # differentiable w.r.t. D's parameters
    assert d.body.fc0.weight.grad is not None


def test_wgan_gp_penalty_equals_direct_autograd():
    _, d = build_models(ModelSpec(hidden=8))
    ctx = _ctx(d)
    terms = create_method("wgan_gp", weight=10.0).loss({}, ctx)
    a = Streams([7], METHOD).uniform(8, 1)[0]  # the draws the context's stream makes
    x = (a * ctx.real[0] + (1 - a) * ctx.fake[0]).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    expected = 10.0 * ((grad.norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(terms["gp"], expected.reshape(1))


def _configured(name, spec=None, **params):
    """`spec` with method `name`'s build-time switches (a class method: no instance)."""
    m = create_method(name, **params)
    return type(m).configure_models(m.config, spec)
