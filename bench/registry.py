"""A name -> class registry shared by methods and datasets (register, get, names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.errors import ConfigError


class Registry:
    """Maps registered names to classes; an unknown name raises a `ConfigError` listing the rest."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str | None = None) -> Callable[[Any], Any]:
        """Decorator; the name defaults to the defining module's file name."""

        def deco(obj: Any) -> Any:
            key = name or obj.__module__.rsplit(".", 1)[-1]
            if key in self._entries:
                raise KeyError(f"{self.kind} {key!r} is registered twice")
            obj.name = key
            self._entries[key] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
