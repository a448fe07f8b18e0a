"""What Android's framework tools run against: the registry of commands (``@command``) and the
context a command sees (``Ctx``): the handset model, argv's cwd and environment, the caller's
uid and pid in the handset, its stdin, stdout and stderr.

The commands are the programs of ``/system/bin`` that Android implements outside the shell
(getprop, am, pm, settings, ...). The real shell (mksh) runs them in the handset's sandbox as the
multi-call client ``userland/native/framework.c``, which forwards to ``userland.rpc``; that builds
a Ctx per call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .files import FsError, ShellFiles

if TYPE_CHECKING:
    from ..handset import VirtualHandset

__all__ = ["COMMANDS", "Caller", "Ctx", "ExitShell", "StdinReader", "Streams", "command"]

SH = "/system/bin/sh"


class ExitShell(Exception):
    """A command's way to end with a code from deep inside (kept for the commands' sake)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Caller:
    """Who runs the command: uid (0 under su) and the tool process's pid in the handset."""

    uid: int = 2000
    pid: int = 0
    ppid: int = 0


class StdinReader:
    """The caller's stdin in chunks (``read()``: b"" at its end); ``pending`` holds bytes a
    command read past what it needed, for the next read."""

    def __init__(self, read_chunk: Callable[[], Awaitable[bytes]] | None = None) -> None:
        self._read_chunk = read_chunk
        self.pending = b""
        self.eof = read_chunk is None

    async def read(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        if self.eof or self._read_chunk is None:
            return b""
        data = await self._read_chunk()
        if not data:
            self.eof = True
        return data

    async def read_all(self) -> bytes:
        parts = []
        while part := await self.read():
            parts.append(part)
        return b"".join(parts)


@dataclass
class Streams:
    stdin: StdinReader


@dataclass
class Ctx:
    handset: VirtualHandset
    session: Caller
    cwd: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    write_out: Callable[[bytes], None] = lambda data: None
    write_err: Callable[[bytes], None] = lambda data: None
    streams: Streams = field(default_factory=lambda: Streams(StdinReader()))
    # su's way to run a command line as root in the handset's sandbox: (script, ctx) -> exit code
    run_as_root: Callable[[str, Ctx], Awaitable[int]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> ShellFiles:
        return ShellFiles(self.handset)

    @property
    def sdk(self) -> int:
        return self.handset.profile.sdk

    def path(self, p: str) -> str:
        return self.files.norm(p, self.cwd)

    def out(self, text: str | bytes) -> None:
        self.write_out(text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape"))

    def err(self, text: str | bytes) -> None:
        self.write_err(text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape"))

    async def stdin_bytes(self) -> bytes:
        return await self.streams.stdin.read_all()

    async def read_input(self, name: str, paths: list[str]) -> tuple[list[tuple[str, bytes]], int]:
        """Contents of each path ("-" or none: stdin); errors printed as ``name: p: reason``."""
        if not paths:
            return [("-", await self.stdin_bytes())], 0
        result, rc = [], 0
        for p in paths:
            if p == "-":
                result.append((p, await self.stdin_bytes()))
                continue
            try:
                result.append((p, self.files.read(self.path(p))))
            except FsError as exc:
                self.err(f"{name}: {p}: {exc.reason}\n")
                rc = 1
        return result, rc


CommandFn = Callable[[Ctx, list[str]], Awaitable[int]]
COMMANDS: dict[str, CommandFn] = {}


def command(*names: str) -> Callable[[CommandFn], CommandFn]:
    def register(fn: CommandFn) -> CommandFn:
        for name in names:
            COMMANDS[name] = fn
        return fn

    return register
