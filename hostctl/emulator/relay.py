"""The lab's serial relay board: the frame parser with no I/O inside (``RelayBoard``) and its glue
(``EmulatedRelay``), served on a pty and a loopback TCP port by ``ModemServer`` like the modem.

The board speaks what ``hostctl.lab.relay`` documents: four-byte frames ``A0 <channel> <state>
<checksum>``, no answer, ever. As on real boards, a frame with a wrong checksum, a state other
than 00/01, or a channel the board does not have is ignored (and logged here); bytes before a
start byte are skipped. In the lab, channel N feeds handset N: off pulls its power, on restores it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..lab.relay import FRAME_LEN, START, decode_frame

__all__ = ["EmulatedRelay", "Ignored", "RelayBoard", "Switched"]

log = logging.getLogger("hostctl.emulator.relay")


@dataclass(frozen=True, slots=True)
class Switched:
    channel: int
    on: bool


@dataclass(frozen=True, slots=True)
class Ignored:
    data: bytes
    reason: str


class RelayBoard:
    """Sans-IO: ``receive_data(bytes)``, then ``next_event()`` until None."""

    def __init__(self, channels: int, *, initial: bool = True) -> None:
        if not 1 <= channels <= 0xFF:
            raise ValueError(f"a board has 1..255 relays, not {channels}")
        self.channels = channels
        self.states = {ch: initial for ch in range(1, channels + 1)}
        self._buf = bytearray()
        self._events: list[Switched | Ignored] = []

    def receive_data(self, data: bytes) -> None:
        self._buf += data
        while self._buf:
            if self._buf[0] != START:
                start = self._buf.find(bytes((START,)))
                junk = bytes(self._buf if start < 0 else self._buf[:start])
                del self._buf[: len(junk)]
                self._events.append(Ignored(junk, "no start byte A0"))
                continue
            if len(self._buf) < FRAME_LEN:
                return  # the rest of the frame is still on its way
            frame = bytes(self._buf[:FRAME_LEN])
            try:
                channel, on = decode_frame(frame)
            except ValueError as exc:
                # not a frame: drop its start byte only and look for the next A0, so a stray
                # A0 does not swallow the valid frame that follows it
                del self._buf[:1]
                self._events.append(Ignored(frame[:1], str(exc)))
                continue
            del self._buf[:FRAME_LEN]
            if channel not in self.states:
                self._events.append(Ignored(frame, f"no relay {channel} on a {self.channels}-relay board"))
                continue
            self.states[channel] = on
            self._events.append(Switched(channel, on))

    def next_event(self) -> Switched | Ignored | None:
        return self._events.pop(0) if self._events else None


class EmulatedRelay:
    """The board behind a ``ModemServer`` (it needs only ``add_sink`` and ``feed``).
    ``on_switch(channel, on)`` is called for every frame obeyed, on the server's thread."""

    def __init__(self, channels: int, on_switch: Callable[[int, bool], None]) -> None:
        self.board = RelayBoard(channels)
        self.on_switch = on_switch
        self.ignored: list[Ignored] = []
        self._lock = threading.Lock()

    def add_sink(self, sink: Callable[[bytes], None]) -> None:
        """The board never talks back; nothing to send."""

    def feed(self, data: bytes, reply_to: object = None) -> None:
        with self._lock:
            self.board.receive_data(data)
            events = []
            while (ev := self.board.next_event()) is not None:
                events.append(ev)
        for ev in events:
            if isinstance(ev, Ignored):
                log.warning("relay board ignored %s: %s", ev.data.hex(" ").upper(), ev.reason)
                self.ignored.append(ev)
                del self.ignored[:-100]
            else:
                log.info("relay %d %s", ev.channel, "on" if ev.on else "off")
                try:
                    self.on_switch(ev.channel, ev.on)
                except Exception:  # a wiring fault must not stop the board
                    log.exception("relay %d: switching failed", ev.channel)

    def states(self) -> dict[int, bool]:
        with self._lock:
            return dict(self.board.states)
