"""Serial USB relay boards, for pulling a handset's power (pyserial).

The protocol is the one of the common CH340-based boards (LCUS-1/-2/-4/-8 and their clones):
every command is one four-byte frame, at 9600 baud, 8N1::

    A0 <channel> <state> <checksum>

- ``A0``: start byte;
- ``channel``: the relay, counted from 1 (``01`` .. ``08`` on the usual boards; the frame allows
  up to ``FF``);
- ``state``: ``01`` closes the contact (power on), ``00`` opens it (power off);
- ``checksum``: ``(0xA0 + channel + state) & 0xFF``.

So ``A0 01 01 A2`` switches relay 1 on and ``A0 01 00 A1`` switches it off. The boards **do not
answer**: there is no acknowledgement and no way to read a relay back, so the state this driver
reports is what it last commanded (``None`` until it has commanded that channel). A frame with a
wrong checksum is silently ignored by the board.

``cycle`` is how a wedged handset is power-cycled: **off**, wait ``off_seconds`` (default 2 s, long
enough for a handset's capacitors to drain), **on**. If the wait is interrupted (Ctrl-C), the
driver still sends **on** before giving up, so a handset is not left unpowered by accident.

``Relay.open(port)`` takes a device path (``/dev/ttyUSB0``, the emulated board's ``/dev/pts/N``)
or any pyserial URL (``socket://127.0.0.1:PORT``, ``loop://``). Writes have a deadline
(``timeout``); a port that vanishes raises ``RelayGoneError``. Controller contract (see
``hostctl.lab.controller``): ``Relay.create({"port": ..., "channel": 1, "baudrate": 9600})``,
``destroy()`` (never raises), ``info()``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..errors import HostctlError
from .controller import ConfigReader

__all__ = [
    "DEFAULT_OFF_SECONDS",
    "Relay",
    "RelayError",
    "RelayGoneError",
    "RelayOpenError",
    "RelayTimeoutError",
    "decode_frame",
    "encode_frame",
]

START = 0xA0
FRAME_LEN = 4
DEFAULT_BAUDRATE = 9600
DEFAULT_OFF_SECONDS = 2.0
DEFAULT_TIMEOUT = 2.0
CONFIG_KEYS = {"port", "channel", "channels", "baudrate", "timeout", "off_seconds", "label", "name"}


class RelayError(HostctlError):
    """Something went wrong with the relay board on ``port``."""

    def __init__(self, message: str, *, port: str, channel: int | None = None) -> None:
        self.port = port
        self.channel = channel
        super().__init__(message)


class RelayOpenError(RelayError):
    """The port could not be opened (no such device, busy, permission, bad URL)."""


class RelayGoneError(RelayError):
    """The port vanished (unplugged, the emulated lab stopped) or was closed."""


class RelayTimeoutError(RelayError):
    """A frame could not be written within the deadline (a stalled port)."""


def checksum(channel: int, state: int) -> int:
    return (START + channel + state) & 0xFF


def encode_frame(channel: int, on: bool) -> bytes:
    """The frame switching ``channel`` (1..255) on or off: ``encode_frame(1, True) == A0 01 01 A2``."""
    if isinstance(channel, bool) or not isinstance(channel, int) or not 1 <= channel <= 0xFF:
        raise ValueError(f"relay channel must be 1..255, not {channel!r}")
    state = 1 if on else 0
    return bytes((START, channel, state, checksum(channel, state)))


def decode_frame(frame: bytes) -> tuple[int, bool]:
    """``(channel, on)`` from a four-byte frame; ValueError saying what is wrong otherwise."""
    if len(frame) != FRAME_LEN:
        raise ValueError(f"a relay frame is {FRAME_LEN} bytes, not {len(frame)}")
    start, channel, state, check = frame
    if start != START:
        raise ValueError(f"start byte {start:02X}, not A0")
    if check != checksum(channel, state):
        raise ValueError(f"checksum {check:02X}, expected {checksum(channel, state):02X}")
    if state not in (0, 1):
        raise ValueError(f"state byte {state:02X} is neither 00 (off) nor 01 (on)")
    if channel == 0:
        raise ValueError("channel 00 does not exist (relays count from 1)")
    return channel, bool(state)


class Relay:
    """One relay board. ``channel`` is the default relay for ``on``/``off``/``cycle``."""

    def __init__(
        self,
        port: Any,
        *,
        name: str,
        channel: int = 1,
        channels: int | None = None,
        baudrate: int = DEFAULT_BAUDRATE,
        timeout: float = DEFAULT_TIMEOUT,
        off_seconds: float = DEFAULT_OFF_SECONDS,
    ) -> None:
        self._port = port
        self.name = name
        self.channel = channel
        self.channels = channels
        self.baudrate = baudrate
        self.timeout = timeout
        self.off_seconds = off_seconds
        self.states: dict[int, bool] = {}  # what was last commanded (the board cannot tell)
        self.frames_sent = 0
        self._closed = False

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        port: str,
        *,
        channel: int = 1,
        channels: int | None = None,
        baudrate: int = DEFAULT_BAUDRATE,
        timeout: float = DEFAULT_TIMEOUT,
        off_seconds: float = DEFAULT_OFF_SECONDS,
    ) -> Relay:
        import serial

        try:
            ser = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05, write_timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise RelayOpenError(f"cannot open relay port {port}: {exc}", port=port) from None
        return cls(
            ser,
            name=port,
            channel=channel,
            channels=channels,
            baudrate=baudrate,
            timeout=timeout,
            off_seconds=off_seconds,
        )

    @classmethod
    def create(cls, config: Mapping[str, Any]) -> Relay:
        """From a testbed entry: ``port`` (required), ``channel`` (default 1), ``channels`` (how
        many relays the board has, to refuse others), ``baudrate`` (9600), ``timeout`` (2 s),
        ``off_seconds`` (2 s)."""
        cfg = ConfigReader(config, "relay", CONFIG_KEYS)
        port = cfg.text("port")
        channels = cfg.integer("channels", 0xFF, low=1, high=0xFF)
        channel = cfg.integer("channel", 1, low=1, high=channels)
        return cls.open(
            port,
            channel=channel,
            channels=channels if "channels" in config else None,
            baudrate=cfg.integer("baudrate", DEFAULT_BAUDRATE, low=50),
            timeout=cfg.number("timeout", DEFAULT_TIMEOUT, low=0.01),
            off_seconds=cfg.number("off_seconds", DEFAULT_OFF_SECONDS),
        )

    def close(self) -> None:
        self._closed = True
        try:
            self._port.close()
        except Exception:  # noqa: BLE001 - closing a vanished port must not raise
            pass

    def destroy(self) -> None:
        """Release the port. Never raises; the relays stay as they are (boards latch)."""
        self.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        return {
            "kind": "relay",
            "port": self.name,
            "channel": self.channel,
            "channels": self.channels,
            "baudrate": self.baudrate,
            "frames_sent": self.frames_sent,
            "states": {str(ch): ("on" if on else "off") for ch, on in sorted(self.states.items())},
        }

    # -- commands ---------------------------------------------------------------------------------

    def _channel(self, channel: int | None) -> int:
        ch = self.channel if channel is None else channel
        limit = self.channels or 0xFF
        if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= limit:
            raise ValueError(f"relay channel must be 1..{limit}, not {ch!r}")
        return ch

    def set(self, on: bool, channel: int | None = None) -> bytes:
        """Send the frame; returns it. The board does not answer, so this is all there is."""
        import serial

        ch = self._channel(channel)
        frame = encode_frame(ch, on)
        if self._closed:
            raise RelayGoneError(f"{self.name}: the relay port is closed", port=self.name, channel=ch)
        try:
            written = self._port.write(frame)
        except serial.SerialTimeoutException:
            raise RelayTimeoutError(
                f"{self.name}: writing {frame.hex(' ').upper()} did not finish within {self.timeout:g} s",
                port=self.name,
                channel=ch,
            ) from None
        except (serial.SerialException, OSError, AttributeError, TypeError) as exc:
            raise RelayGoneError(f"{self.name}: the relay port went away ({exc})", port=self.name, channel=ch) from None
        if written is not None and written != len(frame):
            raise RelayTimeoutError(
                f"{self.name}: only {written} of {len(frame)} bytes written", port=self.name, channel=ch
            )
        self.frames_sent += 1
        self.states[ch] = on
        return frame

    def on(self, channel: int | None = None) -> bytes:
        return self.set(True, channel)

    def off(self, channel: int | None = None) -> bytes:
        return self.set(False, channel)

    def cycle(self, channel: int | None = None, off_seconds: float | None = None) -> list[bytes]:
        """Off, wait ``off_seconds``, on. Returns the two frames sent."""
        wait = self.off_seconds if off_seconds is None else off_seconds
        if wait < 0:
            raise ValueError(f"off_seconds must be >= 0, not {wait}")
        first = self.off(channel)
        try:
            time.sleep(wait)
        finally:  # interrupted or not, do not leave the handset unpowered
            second = self.on(channel)
        return [first, second]

    def state(self, channel: int | None = None) -> bool | None:
        """What was last commanded on ``channel`` (None: never, from here)."""
        return self.states.get(self._channel(channel))
