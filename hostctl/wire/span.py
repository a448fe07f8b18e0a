"""Where a decoded byte came from: the way back from a layer's output to the capture (or the
agent's events file), as Wireshark keeps a reassembled or decrypted data source per frame.

A connection's bottom stream (a TCP direction, an agent TLS session direction, or the
application data ``tlsdecrypt`` recovered) is described by an `Origin`: its source, flow,
direction and a ``locate`` function from a bottom-stream offset to where a person finds those
bytes (``{"wire_offset": n}`` for a capture's TCP stream, ``{"event": line}`` for an events file).
Every decoded message is a `Span`: the chain of layers that produced it (``("http-body",
"gzip")``), the bottom-stream offset of the message or frame that carried it, and the
Origin. A finding is a Span plus the offset inside the decoded bytes.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["C2S", "DIRECTIONS", "S2C", "LineLocator", "Origin", "Span", "other"]

C2S, S2C = "c2s", "s2c"
DIRECTIONS = (C2S, S2C)


def other(direction: str) -> str:
    return S2C if direction == C2S else C2S


def _stream_offset(_direction: str, offset: int) -> dict[str, Any]:
    return {"wire_offset": offset}


@dataclass(frozen=True, slots=True)
class Origin:
    """The bottom stream of a connection. ``source``: "wire" (a capture's TCP stream, offsets are
    TCP stream offsets), "agent" (TLS plaintext from the Frida agent) or "tls-decrypted" (records
    decrypted with a key log). ``locate(direction, offset)`` maps a bottom-stream offset to the
    fields a finding carries to find it again."""

    source: str
    flow: int | None = None
    capture: str | None = None
    host: str | None = None
    locate: Callable[[str, int], dict[str, Any]] = _stream_offset


@dataclass(frozen=True, slots=True)
class Span:
    """A decoded message: ``chain`` of layer names (bottom first), ``wire_offset`` = the
    bottom-stream offset of the message/frame that carried it, in ``direction``."""

    origin: Origin
    direction: str
    chain: tuple[str, ...]
    wire_offset: int

    @property
    def layer(self) -> str:
        return ">".join(self.chain)

    def where(self) -> dict[str, Any]:
        return {"chain": self.layer, **self.origin.locate(self.direction, self.wire_offset)}


@dataclass
class LineLocator:
    """For streams made of events (agent TLS plaintext): bottom-stream offset -> events file line,
    per direction. ``add`` is called with each event's first stream offset, in order."""

    starts: dict[str, list[int]] = field(default_factory=lambda: {C2S: [], S2C: []})
    lines: dict[str, list[int]] = field(default_factory=lambda: {C2S: [], S2C: []})

    def add(self, direction: str, offset: int, line: int) -> None:
        self.starts[direction].append(offset)
        self.lines[direction].append(line)

    def __call__(self, direction: str, offset: int) -> dict[str, Any]:
        i = bisect.bisect_right(self.starts[direction], offset) - 1
        out: dict[str, Any] = {"wire_offset": offset}
        if i >= 0:
            out["event"] = self.lines[direction][i]
        return out
