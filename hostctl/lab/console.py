"""UART console recorder: a handset's serial log, read from a port into an evidence file.

``Console.open(port, out)`` takes a device path (a USB-UART adapter's ``/dev/ttyUSB1``, the
emulated console's ``/dev/pts/N``) or any pyserial URL (``socket://127.0.0.1:PORT``, ``loop://``).
Recording runs on a background thread (``start`` / ``stop``) or in the caller (``record``), until
stopped or until ``duration`` seconds have passed. Input already waiting in the port when the
recording starts is discarded: the file holds what the handset printed while it was recorded.

File format (UTF-8 text, appended to, flushed line by line so a crash keeps what was read)::

    2025-01-31T09:15:02.123456Z [   12.345678] I/ActivityManager(  612): Start proc ...

One line of the file per line of the console: the host's UTC time (ISO 8601, microseconds, ``Z``)
at which the line's first byte was read, one space, the line as the handset sent it without its
CR/LF. Bytes that are not UTF-8 are kept as ``\\xNN`` escapes. A last line without its end (the
port went away mid-line) is kept as it is.

A port that vanishes (adapter unplugged, the emulated lab stopped) ends the recording cleanly:
the file keeps everything read, the recording's ``ended_by`` is ``"port-gone"`` and ``record``
raises ``ConsoleGoneError`` carrying it. Every read has a deadline (0.1 s slices), so ``stop``
returns promptly. Controller contract (``hostctl.lab.controller``): ``Console.create({"port": ...,
"evidence_dir": ..., "label": "hs1"})`` records into ``<evidence_dir>/console-<label>.log``;
``destroy()`` stops and never raises; ``info()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError, HostctlError
from .controller import ConfigReader

__all__ = ["Console", "ConsoleError", "ConsoleGoneError", "ConsoleOpenError", "ConsoleRecording", "format_line"]

DEFAULT_BAUDRATE = 115200
_READ_SLICE = 0.1
CONFIG_KEYS = {"port", "out", "evidence_dir", "label", "baudrate", "name"}


class ConsoleError(HostctlError):
    """Something went wrong with the console on ``port``."""

    def __init__(self, message: str, *, port: str) -> None:
        self.port = port
        super().__init__(message)


class ConsoleOpenError(ConsoleError):
    """The port (or the output file) could not be opened."""


class ConsoleGoneError(ConsoleError):
    """The port vanished mid-recording; ``recording`` says what was kept."""

    def __init__(self, message: str, *, port: str, recording: ConsoleRecording | None = None) -> None:
        self.recording = recording
        super().__init__(message, port=port)


@dataclass(frozen=True, slots=True)
class ConsoleRecording:
    port: str
    path: str
    started: float  # epoch seconds
    ended: float
    lines: int
    bytes: int
    ended_by: str  # "stopped" | "duration" | "port-gone"
    error: str | None = None

    @property
    def gone(self) -> bool:
        return self.ended_by == "port-gone"

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "out": self.path,
            "started": _stamp(self.started),
            "ended": _stamp(self.ended),
            "seconds": round(self.ended - self.started, 3),
            "lines": self.lines,
            "bytes": self.bytes,
            "ended_by": self.ended_by,
            "error": self.error,
        }


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_line(epoch: float, raw: bytes) -> str:
    """One line of the evidence file (with its newline) for console bytes read at ``epoch``."""
    text = raw.rstrip(b"\r\n").replace(b"\x00", b"").decode("utf-8", "backslashreplace")
    return f"{_stamp(epoch)} {text}\n"


class Console:
    """One UART console being recorded into ``out``."""

    def __init__(
        self, port: Any, *, name: str, out: Path, baudrate: int = DEFAULT_BAUDRATE, label: str | None = None
    ) -> None:
        self._port = port
        self.name = name
        self.out = Path(out)
        self.baudrate = baudrate
        self.label = label
        self.error: ConsoleGoneError | None = None
        self.recording: ConsoleRecording | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._lines = self._bytes = 0

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    def open(cls, port: str, out: str | Path, *, baudrate: int = DEFAULT_BAUDRATE, label: str | None = None) -> Console:
        import serial

        try:
            ser = serial.serial_for_url(port, baudrate=baudrate, timeout=_READ_SLICE, write_timeout=2.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ConsoleOpenError(f"cannot open console port {port}: {exc}", port=port) from None
        return cls(ser, name=port, out=Path(out), baudrate=baudrate, label=label)

    @classmethod
    def create(cls, config: Mapping[str, Any]) -> Console:
        """From a testbed entry: ``port`` (required); ``out`` (a file) or ``evidence_dir`` (a
        folder: the file is ``console-<label>.log``); ``label`` (default ``console``);
        ``baudrate`` (115200)."""
        cfg = ConfigReader(config, "console", CONFIG_KEYS)
        port = cfg.text("port")
        label = cfg.text("label", "console")
        out = cfg.text("out", None)
        folder = cfg.text("evidence_dir", None)
        if out is None and folder is None:
            raise ConfigError("evidence_dir", "is required (or give `out`, a file)", controller="console")
        if out is None:
            if "/" in label or label in (".", ".."):
                raise ConfigError("label", f"cannot name a file: {label!r}", controller="console")
            out = str(Path(folder) / f"console-{label}.log")
        return cls.open(port, out, baudrate=cfg.integer("baudrate", DEFAULT_BAUDRATE, low=50), label=label)

    def close(self) -> None:
        self._closed = True
        try:
            self._port.close()
        except Exception:  # noqa: BLE001 - closing a vanished port must not raise
            pass

    def destroy(self) -> None:
        """Stop recording (keeping what was read) and release the port. Never raises."""
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - the contract: destroy never raises
            pass
        self.close()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def info(self) -> dict[str, Any]:
        rec = self.recording
        return {
            "kind": "console",
            "port": self.name,
            "label": self.label,
            "out": str(self.out),
            "baudrate": self.baudrate,
            "recording": self.recording_now,
            "lines": rec.lines if rec else self._lines,
            "bytes": rec.bytes if rec else self._bytes,
            "ended_by": rec.ended_by if rec else None,
            "error": rec.error if rec else None,
        }

    @property
    def recording_now(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- recording --------------------------------------------------------------------------------

    def start(self, duration: float | None = None) -> None:
        """Record on a background thread until ``stop()``, ``duration`` or the port going away."""
        if self.recording_now:
            raise ConsoleError(f"{self.name}: already recording", port=self.name)
        if self._closed:
            raise ConsoleGoneError(f"{self.name}: the console port is closed", port=self.name)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.out, "a", encoding="utf-8")  # noqa: SIM115 - handed to the reader thread, which closes it
        except OSError as exc:
            raise ConsoleOpenError(f"cannot write {self.out}: {exc}", port=self.name) from None
        try:
            self._port.reset_input_buffer()  # what waited before we started is not ours
        except Exception:  # noqa: BLE001 - not every URL handler can; a gone port shows in the loop
            pass
        self._stop.clear()
        self.error, self.recording = None, None
        self._lines = self._bytes = 0
        deadline = None if duration is None else time.monotonic() + max(0.0, duration)
        self._thread = threading.Thread(
            target=self._run, args=(fh, deadline), daemon=True, name=f"hostctl-console {self.name}"
        )
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the recording to end by itself; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> ConsoleRecording | None:
        """End the recording (if any) and return it; never raises for a vanished port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.recording

    def record(self, duration: float | None = None) -> ConsoleRecording:
        """Record in the caller until ``duration`` (or ``stop()`` from another thread). Raises
        ``ConsoleGoneError`` (with ``.recording``) when the port vanished; the file keeps it."""
        self.start(duration)
        self.wait()
        rec = self.stop()
        assert rec is not None
        if self.error is not None:
            raise self.error
        return rec

    def _run(self, fh: Any, deadline: float | None) -> None:
        import serial

        started = time.time()
        buf = bytearray()
        line_time = started
        ended_by, error = "stopped", None
        try:
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    ended_by = "duration"
                    break
                try:
                    waiting = self._port.in_waiting
                    data = self._port.read(min(max(waiting, 1), 65536))
                except (serial.SerialException, OSError, AttributeError, TypeError, ValueError) as exc:
                    ended_by, error = "port-gone", f"{self.name}: the console port went away ({exc})"
                    break
                if not data:
                    continue
                now = time.time()
                if not buf:
                    line_time = now
                self._bytes += len(data)
                buf += data
                while (nl := buf.find(b"\n")) >= 0:
                    fh.write(format_line(line_time, bytes(buf[: nl + 1])))
                    self._lines += 1
                    del buf[: nl + 1]
                    line_time = now
                fh.flush()
        finally:
            if buf.strip(b"\r\n\x00"):
                fh.write(format_line(line_time, bytes(buf)))
                self._lines += 1
            fh.close()
            self.recording = ConsoleRecording(
                self.name, str(self.out), started, time.time(), self._lines, self._bytes, ended_by, error
            )
            if error is not None:
                self.error = ConsoleGoneError(
                    f"{error}; {self.out} keeps the {self._lines} line(s) read",
                    port=self.name,
                    recording=self.recording,
                )
