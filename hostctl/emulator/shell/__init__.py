"""Android shell emulation for the emulated handset (mksh + toolbox/toybox + framework tools).

The ADB server calls ``AndroidShell(handset).run(command, io)`` for ``shell:cmd`` and
``interactive(io, tty=...)`` for a bare ``shell:``. Nothing here runs host commands.
"""

from __future__ import annotations

from ..handset import VirtualHandset
from . import cmd_android, cmd_core, cmd_tcpdump  # noqa: F401 - register the commands
from .interp import COMMANDS, CallbackOutput, ExitShell, IOInput, Session, Streams
from .io import ShellIO

__all__ = ["AndroidShell", "COMMANDS"]


class AndroidShell:
    def __init__(self, handset: VirtualHandset) -> None:
        self.handset = handset

    def _streams(self, io: ShellIO, stdin: IOInput) -> Streams:
        return Streams(stdin, CallbackOutput(io.write_stdout), CallbackOutput(io.write_stderr))

    async def run(self, command: str, io: ShellIO) -> int:
        """Run one command line in a fresh session (like `sh -c`); returns its exit code."""
        session = Session(self.handset)
        try:
            rc = await session.run_text(command, self._streams(io, IOInput(io)))
        except ExitShell as exc:
            rc = exc.code
        return rc & 0xFF

    def prompt(self, session: Session) -> bytes:
        return f"shell@{self.handset.profile.product.device}:{session.cwd} $ ".encode()

    async def interactive(self, io: ShellIO, *, tty: bool) -> int:
        """Read command lines from stdin until `exit [N]` or EOF; prompt only with a tty."""
        session = Session(self.handset)
        stdin = IOInput(io)
        streams = self._streams(io, stdin)
        buf = b""
        rc = 0
        while True:
            if tty:
                io.write_stdout(self.prompt(session))
            while b"\n" not in buf:
                chunk = await stdin.read()
                if not chunk:
                    break
                buf += chunk
            if not buf:
                return session.last_rc & 0xFF
            line, _, buf = buf.partition(b"\n")
            line = line.rstrip(b"\r")  # a terminal may send "\r\n"
            stdin.pending = buf  # commands reading stdin consume what follows the line
            buf = b""
            text = line.decode("utf-8", "surrogateescape")
            try:
                rc = await session.run_text(text, streams)
            except ExitShell as exc:
                return exc.code & 0xFF
            buf, stdin.pending = stdin.pending, b""
            if stdin.eof and not buf:
                return rc & 0xFF
