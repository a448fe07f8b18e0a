"""The contract between the ADB shell service and the Android shell emulation.

The ADB driver owns the stream; the shell only sees this interface. ``read_stdin`` returns b""
at end of input (the client closed stdin, or there is none).
"""

from __future__ import annotations

from typing import Protocol


class ShellIO(Protocol):
    async def read_stdin(self) -> bytes:
        """Next chunk of stdin; b"" at end of input."""

    def write_stdout(self, data: bytes) -> None:
        """Queue bytes for the client's stdout (flow control is the driver's job)."""

    def write_stderr(self, data: bytes) -> None:
        """Queue bytes for stderr (merged into stdout by the driver for shell v1 / exec)."""
