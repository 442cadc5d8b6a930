"""Dataset registry: every module in this package registers one or more datasets."""

import importlib
import pkgutil

from bench.datasets.base import Dataset, create_dataset, dataset_registry

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base" and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Dataset", "create_dataset", "dataset_registry"]
