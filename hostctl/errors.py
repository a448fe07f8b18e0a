"""hostctl's error types. Light on purpose: the CLI imports them before anything that needs adb."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AdbServerError",
    "CommandError",
    "ConfigError",
    "DeviceError",
    "DeviceGoneError",
    "DeviceNotFoundError",
    "DeviceStateError",
    "DeviceTimeoutError",
    "HostctlError",
]


class HostctlError(Exception):
    """Base of every error hostctl raises on purpose."""


class AdbServerError(HostctlError):
    """The adb server did not answer (dead, wrong port, unreachable host)."""

    def __init__(self, server: Any, reason: str, *, timed_out: bool = False) -> None:
        self.server = server
        self.reason = reason
        self.timed_out = timed_out
        hint = (
            "start one with `adb start-server` (it listens on ANDROID_ADB_SERVER_PORT) or point "
            "hostctl at another with --adb HOST:PORT"
        )
        super().__init__(f"no adb server answering at {server} ({reason}); {hint}")


class DeviceError(HostctlError):
    """Something went wrong with one device; carries what was run and what came back."""

    def __init__(
        self,
        message: str,
        *,
        serial: str,
        command: str | None = None,
        output: str = "",
        exit_code: int | None = None,
        server: Any = None,
    ) -> None:
        self.serial = serial
        self.command = command
        self.output = output
        self.exit_code = exit_code
        self.server = server
        super().__init__(message)


class DeviceNotFoundError(DeviceError):
    """No device with that serial on the adb server(s) asked."""


class DeviceStateError(DeviceError):
    """The device is attached but not usable: offline, unauthorized, recovery, ..."""

    def __init__(self, message: str, *, state: str, **kw: Any) -> None:
        self.state = state
        super().__init__(message, **kw)


class DeviceGoneError(DeviceError):
    """The device vanished (unplugged, powered off, adb transport closed) during a command."""


class DeviceTimeoutError(DeviceError):
    """The device did not finish a command within its timeout."""

    def __init__(self, message: str, *, timeout: float, **kw: Any) -> None:
        self.timeout = timeout
        super().__init__(message, **kw)


class CommandError(DeviceError):
    """A shell command ran and exited non-zero."""


class ConfigError(HostctlError):
    """A testbed / controller config is wrong; ``key`` names the bad entry (``relay.channel``).

    Errors from a file (``source``: its name, ``line``: 1-based, when known) read like a
    compiler's: ``lab.yaml:14: testbeds[0].handsets[1].sims[0].number: '12' is not an E.164
    number``; ``key`` is then the full key path. Without ``source`` the message is a controller's:
    ``relay config: 'channel' is required``.
    """

    def __init__(
        self,
        key: str,
        problem: str,
        *,
        controller: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.key = key
        self.problem = problem
        self.controller = controller
        self.source = source
        self.line = line
        if source is None and line is None:
            where = f"{controller} config" if controller else "config"
            super().__init__(f"{where}: {key!r} {problem}")
            return
        where = (source or "<config>") + (f":{line}" if line else "")
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
