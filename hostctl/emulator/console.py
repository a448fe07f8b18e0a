"""A handset's UART console, emulated: its log as a serial console prints it, served on a pty and
a loopback TCP port by ``ModemServer`` (which needs only ``add_sink`` and ``feed``).

While the handset is powered, every logcat entry goes out as kernel-log style lines, CR LF ended,
with the seconds since power-on as the kernel stamps them::

    [   12.345678] I/ActivityManager(  612): Start proc com.android.mms

Power-on prints a short boot banner and power-off ``reboot: Power down``; a powered-off handset's
console is silent. What a terminal types is ignored (the console has no shell here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .handset import LogEntry

__all__ = ["EmulatedConsole", "console_line"]


def console_line(uptime: float, text: str) -> bytes:
    return f"[{uptime:12.6f}] {text}\r\n".encode("utf-8", "replace")


class EmulatedConsole:
    def __init__(self, label: str, model: str, handset: Any, powered: bool) -> None:
        self.label, self.model = label, model
        self._sinks: list[Callable[[bytes], None]] = []
        self._lock = threading.Lock()
        self.powered = powered
        self._boot = time.monotonic()
        self._remove = handset.add_log_listener(self._on_log)

    def add_sink(self, sink: Callable[[bytes], None]) -> None:
        with self._lock:
            self._sinks.append(sink)

    def feed(self, data: bytes, reply_to: object = None) -> None:
        """Typed input: ignored."""

    def close(self) -> None:
        self._remove()
        with self._lock:
            self._sinks.clear()

    def _emit(self, texts: list[str]) -> None:
        uptime = time.monotonic() - self._boot
        data = b"".join(console_line(uptime, t) for t in texts)
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            sink(data)

    def _on_log(self, entry: LogEntry) -> None:
        if not self.powered:
            return
        self._emit(
            [f"{entry.priority}/{entry.tag}({entry.pid:5d}): {line}" for line in (entry.message.split("\n") or [""])]
        )

    def power(self, on: bool) -> None:
        if on and not self.powered:
            self._boot = time.monotonic()
            self.powered = True
            self._emit(
                [
                    "Booting Linux on physical CPU 0x0",
                    f"Machine: hostctl emulated handset {self.label} ({self.model})",
                    "init: init started!",
                ]
            )
        elif not on and self.powered:
            self._emit(["reboot: Power down"])
            self.powered = False
