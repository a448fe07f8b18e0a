"""Helpers shared by the shell and handset tests (no tests here): an in-memory ShellIO."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from hostctl.emulator.handset import VirtualHandset
from hostctl.emulator.profiles import load_profile
from hostctl.emulator.shell import AndroidShell


class MemoryIO:
    def __init__(self, stdin: bytes = b"", chunk: int = 0) -> None:
        self._stdin = stdin
        self._chunk = chunk
        self.stdout = bytearray()
        self.stderr = bytearray()

    async def read_stdin(self) -> bytes:
        n = self._chunk or len(self._stdin)
        data, self._stdin = self._stdin[:n], self._stdin[n:]
        return data

    def write_stdout(self, data: bytes) -> None:
        self.stdout += data

    def write_stderr(self, data: bytes) -> None:
        self.stderr += data


@dataclass
class Result:
    out: str
    err: str
    rc: int


def make_handset(tmp_path: Path, profile: str = "miui-v5-2014-07", **kw) -> VirtualHandset:
    return VirtualHandset(label="bench-a", profile=load_profile(profile), state_dir=tmp_path / "state", **kw)


def run(handset: VirtualHandset, command: str, stdin: bytes = b"") -> Result:
    io = MemoryIO(stdin)
    rc = asyncio.run(AndroidShell(handset).run(command, io))
    return Result(io.stdout.decode("utf-8", "replace"), io.stderr.decode("utf-8", "replace"), rc)
