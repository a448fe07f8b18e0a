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
_UNKNOWN = object()  # a heuristic not asked yet (Registry._known)


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
        self._tables: _Tables | None = None  # what choose looks up, made from `layers` when first needed
        self._memo: tuple[bytes, bytes, list[Any]] | None = None  # see _known

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
            self._tables = self._memo = None
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
    def _lookup(self) -> _Tables:
        t = self._tables
        if t is None or t.source is not self.layers or t.count != len(self.layers):
            t = self._tables = _Tables(self.layers)  # (again if the list was replaced or changed)
            self._memo = None
        return t

    def choose(
        self, c2s: bytes, s2c: bytes, *, port: int | None = None, alpn: str | None = None, final: bool = False
    ) -> Any:
        """The layer class for a stream whose directions began with ``c2s`` / ``s2c``; WAIT when
        a heuristic needs more bytes (and ``final`` is false); None when nothing claims it."""
        t = self._lookup()
        if alpn:
            factory = t.alpn.get(alpn)
            if factory is not None:
                return factory
        known = self._known(c2s, s2c, len(t.sniffers))
        for i, (sniff, factory) in enumerate(t.sniffers):
            verdict = known[i]
            if verdict is _UNKNOWN:
                verdict = known[i] = sniff(c2s, s2c)
            if verdict is WAIT:
                if not final:
                    return WAIT  # a higher-priority heuristic must be able to say first
            elif verdict:
                return factory
        if port is not None:
            return t.ports.get(port)
        return None

    def _known(self, c2s: bytes, s2c: bytes, n: int) -> list[Any]:
        """The heuristics' verdicts on these heads so far (_UNKNOWN: not asked yet). The last
        heads' are remembered, by the very objects: one stream's first piece is looked at by
        protocol identification and then by its decoder stack, each asking with other options
        (a heuristic is a function of the bytes alone, and bytes do not change). (Forgotten
        whenever the layers change.)"""
        memo = self._memo
        if memo is not None and memo[0] is c2s and memo[1] is s2c:
            return memo[2]
        known = [_UNKNOWN] * n
        if type(c2s) is bytes and type(s2c) is bytes:
            self._memo = (c2s, s2c, known)
        return known

    def name_of(
        self,
        c2s: bytes,
        s2c: bytes,
        *,
        port: int | None = None,
        alpn: str | None = None,
        final: bool = False,
        among: Any = None,
    ) -> Any:
        """The registered name of the layer `choose` would pick (WAIT or None likewise).

        ``among`` (a frozenset of names; with ``final`` and no ``port`` or ``alpn``): only whether
        the layer picked is one of them matters, so the heuristics of the layers after the last of
        them are not run, and None stands for any other answer."""
        if among is not None and final and port is None and not alpn:
            t = self._lookup()
            named = t.upto.get(among)
            if named is None:
                last = max((i + 1 for i, (_sniff, name) in enumerate(t.named) if name in among), default=0)
                named = t.upto[among] = t.named[:last]
            known = self._known(c2s, s2c, len(t.sniffers))
            for i, (sniff, name) in enumerate(named):
                verdict = known[i]
                if verdict is _UNKNOWN:
                    verdict = known[i] = sniff(c2s, s2c)
                if verdict and verdict is not WAIT:
                    return name if name in among else None
            return None  # nothing claims it, or only a layer after the last of them
        factory = self.choose(c2s, s2c, port=port, alpn=alpn, final=final)
        if factory is None or factory is WAIT:
            return factory
        return self._lookup().names[factory]

    def upgrade(self, token: str) -> Any:
        return self.upgrades.get(token.strip().lower())

    def walk_body(self, conn: Any, span: Any, data: bytes) -> None:
        for _prio, _name, fn in self.walkers:
            fn(conn, span, data)

    def names(self) -> list[str]:
        return [e.name for e in self.layers]


class _Tables:
    """The registry's layers as choose reads them, in priority order: the heuristics with their
    layer, the first layer claiming each ALPN name and each port, each layer class's name."""

    def __init__(self, layers: list[_Entry]) -> None:
        self.source, self.count = layers, len(layers)
        self.alpn: dict[str, Any] = {}
        self.ports: dict[int, Any] = {}
        self.names: dict[Any, str] = {}
        for e in layers:
            for a in e.alpn:
                self.alpn.setdefault(a, e.factory)
            for port in e.ports:
                self.ports.setdefault(port, e.factory)
            self.names.setdefault(e.factory, e.name)
        self.sniffers = tuple((e.sniff, e.factory) for e in layers if e.sniff is not None)
        self.named = tuple((e.sniff, self.names[e.factory]) for e in layers if e.sniff is not None)
        self.upto: dict[Any, tuple] = {}  # name_of(among=...): the heuristics that can matter


REGISTRY = Registry()
