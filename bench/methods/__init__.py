"""Method registry. Every module in this package (but `base` and private ones) registers one
method under its file name; importing the package imports them all, so a new module is picked up
without edits anywhere else."""

import importlib
import pkgutil

from bench.methods.base import (
    LossContext,
    Method,
    MethodConfig,
    create_method,
    method_registry,
    register_method,
    search_space,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base" and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "LossContext",
    "Method",
    "MethodConfig",
    "create_method",
    "method_registry",
    "register_method",
    "search_space",
]
