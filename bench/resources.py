"""Will a run fit in memory? Estimated before anything is built, so `--hidden 1e8` or
`--batch-size 1e11` is a one-line error instead of an allocator traceback minutes later.

The estimate builds both models on torch's `meta` device (shapes only, no memory) and runs one
forward pass there to count activations: parameters x 4 (weights, gradients, two Adam moments)
plus one batch's activations x 4 (G and D forward, their gradients), in float32.
"""

from __future__ import annotations

import os

import torch

from bench.errors import ConfigError

GIB = 2**30


def estimate_bytes(cfg) -> int:
    """Bytes one training step of `cfg` needs, roughly (a lower bound, not a promise)."""
    from bench.models import build_models

    spec, batch = cfg.model, cfg.train.batch_size
    with torch.device("meta"):
        g, d = build_models(spec)
    n_params = sum(p.numel() for m in (g, d) for p in m.parameters())
    if n_params * 16 > available_bytes(cfg.device):  # no need to count activations
        return n_params * 16
    outputs = [0]

    def count(module, inputs, output):
        if isinstance(output, torch.Tensor) and not list(module.children()):
            outputs[0] += output.numel()

    hooks = [m.register_forward_hook(count) for net in (g, d) for m in net.modules()]
    try:
        with torch.no_grad():
            d(g(torch.empty(batch, spec.z_dim, device="meta")))
    except (RuntimeError, NotImplementedError, TypeError):  # an op without a meta kernel
        pass
    finally:
        for h in hooks:
            h.remove()
    return n_params * 16 + outputs[0] * 4 * 4


def available_bytes(device: str) -> int:
    """Free memory on `device`: the GPU's free memory, or the host's available memory."""
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_memory(cfg, runs: int = 1) -> None:
    """A one-line ConfigError when `runs` runs of `cfg` trained together (a population: every
    tensor K times) cannot fit in the device's free memory."""
    need, free = runs * estimate_bytes(cfg), available_bytes(cfg.device)
    if need > free:
        what = f"batch_size={cfg.train.batch_size} with hidden={cfg.model.hidden}"
        fix = "batch or model"
        if runs > 1:
            what, fix = f"population={runs} of {what}", "--population, batch or model"
        raise ConfigError(f"{what} needs about {need / GIB:.3g} GiB; {free / GIB:.3g} GiB is "
                          f"free on {cfg.device}: use a smaller {fix}")  # fmt: skip


def fitting_population(cfg, k: int, requested: int | str) -> int:
    """`k` runs of `cfg` to train together, checked against free memory: an explicit request
    that does not fit is a one-line error, `auto` shrinks to what fits (at least 1)."""
    if requested == "auto":
        return max(1, min(k, available_bytes(cfg.device) // max(1, estimate_bytes(cfg))))
    check_memory(cfg, runs=k)
    return k
