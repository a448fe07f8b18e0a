"""Which decoder comes next, decided by what it sees, as Wireshark's dissector tables and
heuristic lists decide (``dissector_add_uint("tcp.port", ...)``, ``dissector_add_string("tls.alpn",
"h2", ...)``, ``heur_dissector_add(...)``): each decoder module registers itself here, and no
other code chooses one with an ``if``.

Four tables:

- connection layers: by named heuristics on the first bytes of each direction (``sniff``), by the
  TLS ALPN protocol (``alpn``) and, when no heuristic claims a stream, by server port (``ports``);
- upgrades: the token of an HTTP/1.1 ``Upgrade`` answered by ``101`` (``websocket``, ``h2c``);
- content codings: the names of ``Content-Encoding`` (see `hostctl.wire.decoders.body`);
- body walkers: run over each decoded message's bytes at its end (protobuf, embedded gzip/zlib).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REGISTRY", "Registry", "WAIT"]

WAIT = object()  # a heuristic needs more bytes before it can say


@dataclass(order=True)
class _Entry:
    priority: int
    name: str = field(compare=False)
    factory: Callable[..., Any] = field(compare=False)
    sniff: Callable[[bytes, bytes], Any] | None = field(compare=False, default=None)
    ports: tuple[int, ...] = field(compare=False, default=())
    alpn: tuple[str, ...] = field(compare=False, default=())


class Registry:
    def __init__(self) -> None:
        self.layers: list[_Entry] = []
        self.upgrades: dict[str, Callable[..., Any]] = {}
        self.walkers: list[tuple[int, str, Callable[..., None]]] = []

    # -- registration -----------------------------------------------------------------------
    def layer(
        self,
        name: str,
        *,
        sniff: Callable[[bytes, bytes], Any] | None = None,
        ports: tuple[int, ...] = (),
        alpn: tuple[str, ...] = (),
        upgrade: tuple[str, ...] = (),
        priority: int = 50,
    ) -> Callable[[Any], Any]:
        """Class decorator: a connection layer, claimed when ``sniff(c2s_head, s2c_head)`` is
        true (WAIT: undecided yet), when the TLS ALPN is one of ``alpn``, or by server port."""

        def register(cls: Any) -> Any:
            self.layers.append(_Entry(priority, name, cls, sniff, ports, alpn))
            self.layers.sort()
            for token in upgrade:
                self.upgrades[token.lower()] = cls
            return cls

        return register

    def walker(self, name: str, *, priority: int = 50) -> Callable[[Any], Any]:
        """Function decorator: ``fn(conn, span, data)`` run over every decoded message."""

        def register(fn: Any) -> Any:
            self.walkers.append((priority, name, fn))
            self.walkers.sort(key=lambda w: w[:2])
            return fn

        return register

    # -- look-ups ---------------------------------------------------------------------------
    def choose(
        self, c2s: bytes, s2c: bytes, *, port: int | None = None, alpn: str | None = None, final: bool = False
    ) -> Any:
        """The layer class for a stream whose directions began with ``c2s`` / ``s2c``; WAIT when
        a heuristic needs more bytes (and ``final`` is false); None when nothing claims it."""
        if alpn:
            for e in self.layers:
                if alpn in e.alpn:
                    return e.factory
        undecided = False
        for e in self.layers:
            if e.sniff is None:
                continue
            verdict = e.sniff(c2s, s2c)
            if verdict is WAIT:
                if not final:
                    undecided = True
                    break  # a higher-priority heuristic must be able to say first
                continue
            if verdict:
                return e.factory
        if undecided:
            return WAIT
        if port is not None:
            for e in self.layers:
                if port in e.ports:
                    return e.factory
        return None

    def name_of(
        self, c2s: bytes, s2c: bytes, *, port: int | None = None, alpn: str | None = None, final: bool = False
    ) -> Any:
        """The registered name of the layer `choose` would pick (WAIT or None likewise)."""
        factory = self.choose(c2s, s2c, port=port, alpn=alpn, final=final)
        if factory is None or factory is WAIT:
            return factory
        return next(e.name for e in self.layers if e.factory is factory)

    def upgrade(self, token: str) -> Any:
        return self.upgrades.get(token.strip().lower())

    def walk_body(self, conn: Any, span: Any, data: bytes) -> None:
        for _prio, _name, fn in self.walkers:
            fn(conn, span, data)

    def names(self) -> list[str]:
        return [e.name for e in self.layers]


REGISTRY = Registry()
