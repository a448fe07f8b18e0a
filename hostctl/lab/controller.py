"""The small contract every lab controller keeps, and reading its testbed config.

A controller (relay board, UART console, ...) is built from one testbed entry, a plain mapping
such as ``{"port": "/dev/ttyUSB0", "channel": 1, "baudrate": 9600}``:

- ``Controller.create(config) -> Controller`` opens what it needs; a wrong entry raises
  ``hostctl.errors.ConfigError`` naming the bad key;
- ``destroy()`` releases everything and never raises (a vanished port included);
- ``info() -> dict`` is what the run summary records about it (JSON-ready).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..errors import ConfigError

__all__ = ["ConfigReader", "Controller"]

_MISSING = object()


class Controller(Protocol):
    @classmethod
    def create(cls, config: Mapping[str, Any]) -> Controller: ...

    def destroy(self) -> None: ...

    def info(self) -> dict[str, Any]: ...


class ConfigReader:
    """Typed reads from one controller's config; every failure names its key."""

    def __init__(self, config: Any, controller: str, allowed: set[str]) -> None:
        if not isinstance(config, Mapping):
            raise ConfigError("<entry>", f"must be a mapping, not {type(config).__name__}", controller=controller)
        self.config, self.controller = config, controller
        for key in config:
            if key not in allowed:
                raise ConfigError(
                    str(key),
                    f"is not a {controller} setting (known: {', '.join(sorted(allowed))})",
                    controller=controller,
                )

    def _get(self, key: str, default: Any) -> Any:
        value = self.config.get(key, default)
        if value is _MISSING:
            raise ConfigError(key, "is required", controller=self.controller)
        return value

    def text(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(key, f"must be a non-empty string, not {value!r}", controller=self.controller)
        return value

    def integer(self, key: str, default: Any = _MISSING, *, low: int | None = None, high: int | None = None) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, not {value!r}", controller=self.controller)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(key, f"must be between {low} and {high}, not {value}", controller=self.controller)
        return value

    def number(self, key: str, default: Any = _MISSING, *, low: float = 0.0) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(key, f"must be a number, not {value!r}", controller=self.controller)
        if value < low:
            raise ConfigError(key, f"must be at least {low}, not {value}", controller=self.controller)
        return float(value)
