"""Parsing of the service names a host OPENs (pure functions).

``shell[,v2][,TERM=x][,raw|,pty]:command``, ``exec:command``, ``sync:``, ``tcp:PORT`` and
``tcp:PORT:HOST``. adbd picks a pty when no command is given unless ``raw`` is asked for.

adbd's own services (packages/modules/adb/daemon/services.cpp ``daemon_service_to_fd``):
``reboot:[TARGET]``, ``root:``, ``unroot:``, ``remount:`` (restart_service.cpp, remount_service.cpp),
``framebuffer:`` (framebuffer_service.cpp) and ``reverse:...`` (adb.cpp ``handle_forward_request``:
``forward:[norebind:]REMOTE;LOCAL``, ``list-forward``, ``killforward:REMOTE``, ``killforward-all``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ShellService:
    command: str
    v2: bool
    pty: bool
    term: str | None


@dataclass(frozen=True, slots=True)
class ExecService:
    command: str


@dataclass(frozen=True, slots=True)
class SyncService:
    pass


@dataclass(frozen=True, slots=True)
class TcpService:
    port: int
    host: str | None


@dataclass(frozen=True, slots=True)
class UnknownService:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class RebootService:
    target: str  # "" (a normal reboot), "bootloader", "recovery", "sideload", ...


@dataclass(frozen=True, slots=True)
class RootService:
    root: bool  # root: / unroot:


@dataclass(frozen=True, slots=True)
class RemountService:
    args: str


@dataclass(frozen=True, slots=True)
class FramebufferService:
    pass


@dataclass(frozen=True, slots=True)
class ReverseService:
    verb: str  # forward, list-forward, killforward, killforward-all
    device: str = ""  # the device-side spec ("tcp:8080")
    host: str = ""  # the host-side spec the connections go to ("tcp:9000")
    norebind: bool = False


Service = (
    ShellService
    | ExecService
    | SyncService
    | TcpService
    | RebootService
    | RootService
    | RemountService
    | FramebufferService
    | ReverseService
    | UnknownService
)


def parse_service(name: str) -> Service:
    if name.startswith("shell"):
        return _parse_shell(name)
    if name.startswith("exec:"):
        return ExecService(name[5:])
    if name == "sync:":
        return SyncService()
    if name.startswith("tcp:"):
        port_text, _, host = name[4:].partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return UnknownService(name, f"bad port {port_text!r}")
        return TcpService(int(port_text), host or None)
    if name.startswith("reboot:"):
        return RebootService(name[7:])
    if name in ("root:", "unroot:"):
        return RootService(name == "root:")
    if name.startswith("remount:"):
        return RemountService(name[8:])
    if name == "framebuffer:":
        return FramebufferService()
    if name.startswith("reverse:"):
        return _parse_reverse(name)
    return UnknownService(name, "service not supported by this device")


def _parse_reverse(name: str) -> Service:
    rest = name[len("reverse:") :]
    if rest in ("list-forward", "killforward-all"):
        return ReverseService(rest)
    if rest.startswith("killforward:"):
        return ReverseService("killforward", device=rest[len("killforward:") :])
    if rest.startswith("forward:"):
        spec = rest[len("forward:") :]
        norebind = spec.startswith("norebind:")
        if norebind:
            spec = spec[len("norebind:") :]
        device, sep, host = spec.partition(";")
        if not sep or not device or not host:
            return ReverseService("invalid", device=spec)
        return ReverseService("forward", device, host, norebind)
    return ReverseService("invalid", device=rest)


def _parse_shell(name: str) -> Service:
    head, sep, command = name.partition(":")
    if not sep:
        return UnknownService(name, "shell service without ':'")
    args = head.split(",")
    if args[0] != "shell":
        return UnknownService(name, f"unknown service {args[0]!r}")
    v2 = False
    pty: bool | None = None
    term = None
    for arg in args[1:]:
        if arg == "v2":
            v2 = True
        elif arg == "raw":
            pty = False
        elif arg == "pty":
            pty = True
        elif arg.startswith("TERM="):
            term = arg[5:]
        elif arg:
            # adbd ignores arguments it does not know (newer hosts add some); so do we.
            continue
    if pty is None:
        pty = command == ""
    return ShellService(command, v2, pty, term)
