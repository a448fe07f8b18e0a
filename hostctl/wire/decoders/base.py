"""What every decoder shares: limits, counted notes, the decoded-message stream (`Out`) that
scans a layer's output, and the `Layer` contract.

A layer is sans-IO (habit 1 of STYLE.md): the connection feeds it ``feed(direction, offset,
data)`` with bytes of the layer below (offsets are that layer's stream offsets), ``gap`` where
bytes are missing and ``close`` at the end. It yields the layer above by opening an `Out` per
message (an HTTP body, a WebSocket message, an HTTP/2 header block or stream's DATA) and writing
the decoded bytes to it; an Out scans them for identifiers and hands its bytes to the registry's
body decoders (protobuf, embedded zlib) when it closes. Nothing here raises on bad input: a
malformed layer or a decompression bomb is a counted note (`Notes`) and that message's decoding
stops; the framing below carries on.

Duplicates: bytes a layer passes through unchanged (a de-chunked identity body, an HPACK literal
that is not Huffman-coded, a server's unmasked WebSocket frame) are also in the layer below, which
is scanned too. The writer says so (``write(data, parent_offset=...)``) and a match lying wholly
inside such a piece is left to the layer below, so each occurrence is one finding; a match that
spans two chunks, or lies in bytes a transformation made, belongs to this layer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hostctl.wire.span import Span

if TYPE_CHECKING:
    from hostctl.wire.scan import Match, Scanner

__all__ = ["FEED_STEP", "LIMITS", "Layer", "Limits", "Notes", "Out", "Sink"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on every decoder. A message decoding past ``max_decoded`` bytes, or past
    ``max_ratio`` times its encoded size once over ``ratio_floor`` bytes, is a bomb: a note, and
    its decoding stops (memory stays at one output piece). ``max_head``: bytes of an HTTP head or
    a frame header kept while incomplete. ``max_body_walk``: bytes of a message kept for the body
    decoders (protobuf) run at its end. ``max_frame``: the biggest HTTP/2 / WebSocket frame
    followed (bigger is a malformed note and the direction stops)."""

    max_decoded: int = 64 << 20
    max_ratio: int = 200
    ratio_floor: int = 1 << 20
    max_head: int = 64 << 10
    max_body_walk: int = 1 << 20
    max_frame: int = 16 << 20
    max_held: int = 1 << 20
    max_kept: int = 4 << 20  # bytes all open messages of one connection keep for walkers


LIMITS = Limits()

# Compressed input is handed to a decoder this many bytes at a time by the layers that hold a
# whole message or frame at once (a WebSocket frame, a blob a walker found): each piece of output
# is then at most ``max_ratio`` times this (12.5 MiB), not the whole ``max_decoded`` budget, and
# is scanned and dropped before the next (what HTTP bodies get from TCP segments anyway).
FEED_STEP = 64 << 10


class Sink(Protocol):
    """Where an analysis sends what the layers found (`hostctl.wire.check.WireCheck`)."""

    scanner: Scanner

    def layer_finding(self, match: Match, span: Span, offset: int) -> None: ...

    def layer_note(self, span: Span, kind: str, detail: str) -> None: ...


class Notes:
    """Counted notes: ``kind`` -> count, with the first few details kept."""

    KEEP = 20

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def add(self, kind: str, detail: str, where: dict[str, Any] | None = None) -> None:
        self.counts[kind] += 1
        if len(self.examples) < self.KEEP:
            self.examples.append({"kind": kind, "detail": detail, **(where or {})})

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples": self.examples}


class Out:
    """One decoded message of one layer: scanned as written; the first ``max_body_walk`` bytes
    are kept for the body decoders run at ``close``."""

    __slots__ = ("below", "below_n", "closed", "conn", "keep", "segments", "size", "span", "stream", "walk")

    def __init__(self, conn: ConnectionLike, span: Span, *, walk: bool = True, scan: bool = True) -> None:
        self.conn = conn
        self.span = span
        # scan=False: every byte is the layer below's, unchanged and contiguous (an identity
        # body that was not chunked): only the body walkers see it
        self.stream = conn.sink.scanner.stream() if scan else None
        self.segments: list[tuple[int, int]] = []  # decoded ranges that are verbatim below
        self.keep: bytearray | None = bytearray() if walk else None
        self.size = 0
        self.walk = walk
        self.closed = False
        self.below: bytearray | None = None  # the encoded bytes this message came from (bounded)
        self.below_n = 0  # of them counted in conn.kept (-1: given up)

    def encoded(self, data: bytes) -> None:
        """The encoded bytes (before this layer's transformation) that the next ``write`` came
        from: a match whose bytes are also among them in one piece (a zstd or deflate literal
        left as it was) is the layer below's finding, not a second one."""
        if self.below is None:
            self.below = bytearray()
        lim = self.conn.limits
        if (
            self.below_n >= 0
            and len(self.below) + len(data) <= lim.max_body_walk
            and self.conn.kept + len(data) <= lim.max_kept
        ):
            self.below += data
            self.below_n += len(data)
            self.conn.kept += len(data)
        elif self.below_n >= 0:  # too big to keep: no longer checked
            self.conn.kept -= self.below_n
            self.below_n = -1
            self.below = bytearray(b"\x00")

    def write(self, data: bytes, *, verbatim: bool = False) -> None:
        """The next decoded bytes; ``verbatim``: they are also, unchanged and contiguous, in the
        layer below (so matches wholly inside them are that layer's)."""
        if not data or self.closed:
            return
        start = self.size
        self.size += len(data)
        if verbatim:
            self.segments.append((start, self.size))
            if len(self.segments) > 4096:  # only recent pieces can still hold a match
                horizon = start - (self.conn.sink.scanner.max_len or 0)
                self.segments = [s for s in self.segments if s[1] >= horizon]
        if self.keep is not None:
            if (
                len(self.keep) + len(data) <= self.conn.limits.max_body_walk
                and self.conn.kept + len(data) <= self.conn.limits.max_kept
            ):
                self.keep += data
                self.conn.kept += len(data)
            else:  # too big to walk (or too many open): scanned only
                self.conn.kept -= len(self.keep)
                self.keep = None
        if self.stream is not None:
            self._found(self.stream.feed(data))

    def _found(self, matches: list[Match]) -> None:
        for m in matches:
            if any(a <= m.start and m.end <= b for a, b in self.segments):
                continue
            if self.below is not None and len(m.pattern.data) > 0 and m.pattern.data in self.below:
                continue
            self.conn.sink.layer_finding(m, self.span, m.start)

    def note(self, kind: str, detail: str) -> None:
        self.conn.note(self.span, kind, detail)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.stream is not None:
            self._found(self.stream.close())
        keep, self.keep = self.keep, None
        if keep is not None:
            self.conn.kept -= len(keep)
        if self.below_n > 0:
            self.conn.kept -= self.below_n
        self.below, self.below_n = None, -1
        if keep and self.walk:
            self.conn.registry.walk_body(self.conn, self.span, bytes(keep))


class ConnectionLike(Protocol):
    sink: Sink
    limits: Limits
    registry: Any
    kept: int
    layer: Any  # the current layer (None once the stream is dead or handed over)
    upgrade_headers: dict[bytes, bytes]  # the 101 response's, for the next layer

    def note(self, span: Span, kind: str, detail: str) -> None: ...

    def span(self, direction: str, chain: tuple[str, ...], wire_offset: int) -> Span: ...

    def switch(
        self,
        factory: Callable[..., Any] | None,
        held: dict[str, tuple[int, bytes]],
        *,
        chain: tuple[str, ...] | None = None,
    ) -> None: ...


class Layer:
    """A connection-level decoder (both directions of one stream of the layer below)."""

    name = "layer"
    # True for a layer that decodes nothing at all (opaque from its first byte, no note, no
    # finding): a stream it claims is dropped without making a decoder stack for it
    # (`hostctl.wire.analysis.Connection.claims`)
    always_opaque = False

    def __init__(self, conn: ConnectionLike, chain: tuple[str, ...] = ()) -> None:
        self.conn = conn
        self.chain = chain + (self.name,) if self.name else chain

    def feed(self, direction: str, offset: int, data: bytes) -> None:
        raise NotImplementedError

    def gap(self, direction: str, offset: int, length: int) -> None:
        """Bytes missing in ``direction``: most layers lose that direction's framing."""

    def close(self) -> None:
        """End of both directions: finish open messages."""

    @property
    def opaque(self) -> bool:
        """True when nothing more can be decoded (the caller may stop feeding)."""
        return False
