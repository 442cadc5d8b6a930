"""Method registry. Every module in this package (but `base` and private ones) registers one
method under its file name; importing the package imports them all, so a new module is picked up
without edits anywhere else. Methods of other packages come in through the entry-point group
`gan_bench.methods` (name = method name, value = "package.module:MethodClass")."""

import importlib
import pkgutil
import sys
from importlib.metadata import entry_points

from bench.methods.base import (
    BASELINE,
    ENTRY_POINT_GROUP,
    LossContext,
    Method,
    MethodConfig,
    UpdateContext,
    create_method,
    method_registry,
    register_method,
    search_space,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base" and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")


def load_plugins() -> list[str]:
    """Register the methods of installed packages; a broken plugin is reported in one line on
    stderr and left out (it must not take the whole harness down). Returns the names added."""
    added = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in method_registry:
            continue  # already registered (e.g. the plugin module registered itself)
        try:
            cls = ep.load()
            if not any(method_registry.get(n) is cls for n in method_registry.names()):
                register_method(cls, ep.name)
            added.append(ep.name)
        except Exception as e:  # any import or contract error of someone else's code
            print(f"warning: method plugin {ep.name!r} ({ep.value}) not loaded: {e}",
                  file=sys.stderr)  # fmt: skip
    return added


load_plugins()

__all__ = [
    "BASELINE",
    "LossContext",
    "UpdateContext",
    "Method",
    "MethodConfig",
    "create_method",
    "load_plugins",
    "method_registry",
    "register_method",
    "search_space",
]
