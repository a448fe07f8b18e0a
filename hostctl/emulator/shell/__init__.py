"""The emulated handset's shell: Android's real one (mksh + toybox) in the handset's sandbox.

The ADB server calls ``AndroidShell(handset).run(command, io, pty=...)`` for ``shell:``/``exec:``
(an empty command is an interactive shell). What Android implements outside the shell (getprop,
am, pm, settings, ...) is registered here (``cmd_android``, ``cmd_tcpdump``, ``userland.programs``)
and runs in the model when the sandbox's client programs call it (``userland.rpc``).
"""

from __future__ import annotations

from ..handset import VirtualHandset
from ..userland import programs  # noqa: F401 - register the commands
from . import cmd_android, cmd_tcpdump  # noqa: F401 - register the commands
from .io import ShellIO
from .registry import COMMANDS

__all__ = ["AndroidShell", "COMMANDS"]


class AndroidShell:
    def __init__(self, handset: VirtualHandset) -> None:
        self.handset = handset

    async def run(self, command: str, io: ShellIO, *, pty: bool = False, term: str | None = None) -> int:
        """``sh -c command`` in the handset's sandbox (``sh -`` when command is empty); returns
        its exit code. With ``pty`` the shell runs on a pseudo-terminal (CRLF output, ^C)."""
        from ..adb.server import adbd_is_root
        from ..userland.runtime import userland_of

        uid = 0 if adbd_is_root(self.handset) else 2000  # after `adb root` on a debuggable build
        return await userland_of(self.handset).run(command, io, pty=pty, term=term, uid=uid)

    async def interactive(self, io: ShellIO, *, tty: bool) -> int:
        """An interactive shell (prompt, job control) on a pty when ``tty``; else ``sh -``."""
        return await self.run("", io, pty=tty)
