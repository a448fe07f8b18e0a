"""Streams of bytes -> decoder stack -> scanner: one `Connection` per stream of the layer below.

This is the entry point for anything that has a two-way byte stream to look through: the wire
analyser (each reassembled TCP flow), the agent's TLS plaintext (each TLS session of the
events file) and TLS records decrypted with a key log (``tlsdecrypt``). Usage::

    conn = Connection(sink, Origin("tls-decrypted", flow=7, capture="a.pcapng",
                                   locate=lambda d, off: {"wire_offset": record_offset(d, off)}),
                      chain=("tls",), alpn="h2", port=443, scan_bottom=True)
    conn.feed("c2s", 0, plaintext)        # per direction, offsets of that direction's stream
    conn.gap("s2c", 1200, 300)            # bytes that could not be had
    conn.close()

``sink`` receives ``layer_finding(match, span, offset)`` and ``layer_note(span, kind, detail)``
(`hostctl.wire.decoders.base.Sink`; `hostctl.wire.check.WireCheck` is one). Findings carry the
chain of layers (``tls>h2-header``, ``http-body>gzip>protobuf-varint``), the offset in the
decoded message and, through the Origin's ``locate``, where its carrier is in the capture.

The connection buffers the first bytes of each direction until the registry
(`hostctl.wire.decoders.registry`) names a layer, then replays them to it (mitmproxy's
``NextLayer``). A stream no decoder claims, or one that goes opaque (TLS without keys), is
dropped at once: ``opaque`` tells the caller it may stop feeding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hostctl.wire.decoders.base import LIMITS, Limits, Out, Sink
from hostctl.wire.decoders.registry import REGISTRY, WAIT, Registry
from hostctl.wire.span import C2S, DIRECTIONS, S2C, Origin, Span

__all__ = ["Connection", "SNIFF_BYTES"]

SNIFF_BYTES = 4096  # bytes per direction held while no decoder has claimed the stream


class Connection:
    """Both directions of one stream of the layer below, decoded by a stack of layers."""

    def __init__(
        self,
        sink: Sink,
        origin: Origin,
        *,
        chain: tuple[str, ...] = (),
        port: int | None = None,
        alpn: str | None = None,
        registry: Registry = REGISTRY,
        limits: Limits = LIMITS,
        scan_bottom: bool = False,
    ) -> None:
        self.sink = sink
        self.origin = origin
        self.chain = chain
        self.port = port
        self.alpn = alpn
        self.registry = registry
        self.limits = limits
        self.layer: Any = None
        self._dead = False
        self.upgrade_headers: dict[bytes, bytes] = {}  # the 101 response's, for the next layer
        self.kept = 0  # bytes the open messages keep for the body walkers (Limits.max_kept)
        self._head: dict[str, bytes] = {C2S: b"", S2C: b""}  # what each direction held while sniffing
        self._head_at: dict[str, int | None] = {C2S: None, S2C: None}
        self._bottom = (
            {d: Out(self, Span(origin, d, chain or ("stream",), 0), walk=False) for d in DIRECTIONS}
            if scan_bottom
            else None
        )

    # -- what a layer may call ----------------------------------------------------------------
    def span(self, direction: str, chain: tuple[str, ...], wire_offset: int) -> Span:
        return Span(self.origin, direction, chain, wire_offset)

    def note(self, span: Span, kind: str, detail: str) -> None:
        self.sink.layer_note(span, kind, detail)

    def switch(
        self,
        factory: Callable[..., Any] | None,
        held: dict[str, tuple[int, bytes]],
        chain: tuple[str, ...] | None = None,
    ) -> None:
        """The current layer hands the stream over (HTTP ``101``, a CONNECT tunnel, STARTTLS):
        ``factory`` builds the next one (None: sniff again), ``held`` are the bytes of each
        direction already received past the switch, with their offsets."""
        if factory is None:
            self.layer = None
            if chain is not None:
                self.chain = chain
            for d, (off, data) in held.items():
                if data:
                    self._sniff(d, off, data)
            return
        self.layer = factory(self, chain if chain is not None else self.chain)
        for d in DIRECTIONS:
            if d in held and held[d][1]:
                self.layer.feed(d, held[d][0], held[d][1])

    # -- the stream below -----------------------------------------------------------------------
    @property
    def opaque(self) -> bool:
        return self._dead or (self.layer is not None and self.layer.opaque and self._bottom is None)

    def feed(self, direction: str, offset: int, data: bytes) -> None:
        if self._bottom is not None:
            self._bottom[direction].write(data)
        self.pass_on(direction, offset, data)

    def pass_on(self, direction: str, offset: int, data: bytes) -> None:
        """``data`` to the current layer (or the sniffing), without scanning the bottom again:
        for a layer handing the rest of a piece on after a switch."""
        if self._dead or not data:
            return
        if self.layer is not None:
            self.layer.feed(direction, offset, data)
        else:
            self._sniff(direction, offset, data)

    def _sniff(self, direction: str, offset: int, data: bytes) -> None:
        if self._head_at[direction] is None:
            self._head_at[direction] = offset
        if type(data) is not bytes:
            data = bytes(data)
        head = self._head[direction]
        # (a head that is one piece stays that very object: the registry remembers its last
        # verdicts by the objects it was shown, as protocols.py shows it the same piece first)
        head = self._head[direction] = head + data if head else data
        self._decide(final=len(head) >= SNIFF_BYTES)

    def _decide(self, *, final: bool) -> None:
        c2s, s2c = self._head[C2S], self._head[S2C]
        if len(c2s) > SNIFF_BYTES:
            c2s = c2s[:SNIFF_BYTES]
        if len(s2c) > SNIFF_BYTES:
            s2c = s2c[:SNIFF_BYTES]
        factory = self.registry.choose(c2s, s2c, port=self.port, alpn=self.alpn, final=final)
        if factory is WAIT:
            return
        held = {d: (self._head_at[d] or 0, self._head[d]) for d in DIRECTIONS}
        for d in DIRECTIONS:
            self._head[d] = b""
            self._head_at[d] = None
        if factory is None:
            self._dead = True
            return
        self.switch(factory, held)

    @staticmethod
    def claims(
        direction: str,
        data: bytes,
        *,
        port: int | None = None,
        alpn: str | None = None,
        registry: Registry = REGISTRY,
    ) -> bool:
        """False when a new Connection (without ``scan_bottom``) fed ``data`` as its first bytes
        would drop the stream at once, with nothing noted or found, because no decoder claims it
        or the one that does decodes nothing (TLS without keys): then it need not be made."""
        if not data:
            return True  # nothing to decide on yet
        head = data if type(data) is bytes else bytes(data)
        final = len(head) >= SNIFF_BYTES
        if len(head) > SNIFF_BYTES:
            head = head[:SNIFF_BYTES]
        c2s, s2c = (head, b"") if direction == C2S else (b"", head)
        factory = registry.choose(c2s, s2c, port=port, alpn=alpn, final=final)
        return factory is not None and not getattr(factory, "always_opaque", False)

    def gap(self, direction: str, offset: int, length: int) -> None:
        if self._bottom is not None:
            out = self._bottom[direction]
            if out.stream is None:  # the bottom Outs are made with a scanner (scan=True)
                raise RuntimeError(f"{self.origin}: the stream below has no scanner")
            out._found(out.stream.gap(length))
            out.size += length
        if self.layer is not None:
            self.layer.gap(direction, offset, length)
        elif not self._dead:
            self._head[direction] = b""  # what was held no longer leads anywhere
            self._head_at[direction] = None

    def close(self) -> None:
        if self.layer is None and not self._dead and (self._head[C2S] or self._head[S2C]):
            self._decide(final=True)
        if self.layer is not None:
            self.layer.close()
            self.layer = None
        if self._bottom is not None:
            for out in self._bottom.values():
                out.close()
        self._dead = True
