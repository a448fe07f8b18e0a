"""Multi-pattern scanning of byte streams for identifier patterns: hyperscan when it is importable,
a pure-Python engine otherwise, with identical results.

A capture is scanned as many streams (one per TCP flow direction) that arrive in pieces, and a
pattern may be split across pieces, so scanning is streaming: :meth:`Scanner.stream` gives a
:class:`ScanStream` whose ``feed`` takes the next bytes and returns matches with offsets from the
start of the stream. Memory per stream is bounded: hyperscan keeps its own fixed-size stream
state; the Python engine keeps the last ``max_len - 1`` bytes plus at most one batch of unscanned
input (``max(4096, max_len)`` bytes), and the overlap rule below holds the matches that end
within the last ``2 * max_len`` bytes (and those after them awaiting their turn).

Overlap rule (what a finding is): both engines report every occurrence of every pattern (the
*raw* matches, ``raw=True``). Raw matches of one identifier that overlap (share a byte) are
readings of one occurrence: the ASCII digits inside the URL-encoded E.164 number, the national
number inside the E.164 text, the TBCD digits inside a 23.040 address field, or UTF-16LE text
after a NUL byte, which also reads as UTF-16BE one byte earlier (an Android Parcel's length word
puts a NUL there). Only the best of them is reported: the longest (the most specific form); among
equally long ones the lower pattern id (the form listed first: utf16le before utf16be), then the
earlier start. A match is dropped when any overlapping match of its identifier is better, even one
that is dropped itself (so a chain of overlapping readings yields its best one). Matches of
different identifiers never suppress each other (a message text containing a phone number
reports both). A match is final once no match the stream has yet to report can overlap it (its
end lies ``max_len - 1`` bytes before the scanned position) or at ``gap``/``close``; ``feed``
returns the final ones once nothing undecided or still to come can sort before them, so the
concatenation of everything returned is sorted by (start, pattern id) and does not depend on how
the stream was cut into pieces nor on the engine. (With ``raw``, each call's matches are sorted,
and a later call may return an earlier start.)

The engines: hyperscan (5.x, Python binding ``hyperscan``) compiled in streaming mode, one
expression per pattern with letters and digits as themselves and every other byte written
``\\xHH`` (the binding's literal mode measures patterns with strlen, which would cut UTF-16
patterns at their first NUL). The Python engine indexes every pattern by its 4-byte grams at
offsets 0-3: any occurrence of a pattern of 7 bytes or more covers a 4-byte-aligned gram of the
text at one of those offsets, so intersecting the set of the text's aligned grams with the index
(in C, 16 KiB at a time) leaves a few candidates, each checked with ``startswith``. Shorter
patterns fall back to ``bytes.find``. About 100 MB/s against hyperscan's 2-3 GB/s here.

A Scanner is not thread-safe (hyperscan's scratch space is per database): one per thread.
"""

from __future__ import annotations

import array
import importlib
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hostctl.errors import HostctlError
from hostctl.wire.identifiers import Identifier, Pattern


def _optional_module(name: str) -> Any:
    """The module, or None where it is not installed (its users check first)."""
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - exercised where the wheel is missing
        return None


_hs = _optional_module("hyperscan")

__all__ = ["ENGINES", "Match", "ScanError", "ScanStream", "Scanner", "hyperscan_available"]

ENGINES = ("auto", "hyperscan", "python")
_GRAM = 4
_WINDOW = 4096  # grams per set intersection in the Python engine (16 KiB of text)
_MIN_BATCH = 4096


class ScanError(HostctlError):
    """The scanner could not be built or used (engine missing, compile error, closed stream)."""


def hyperscan_available() -> bool:
    """Whether engine "hyperscan" (and so "auto" with it) can run here."""
    return _hs is not None


@dataclass(frozen=True, slots=True)
class Match:
    """``pattern`` found at stream offsets ``start`` (inclusive) to ``end`` (exclusive)."""

    pattern: Pattern
    start: int
    end: int

    @property
    def ident(self) -> Identifier:
        return self.pattern.ident

    @property
    def form(self) -> str:
        return self.pattern.form


# --- engines: raw matches as (pattern index, end offset relative to the engine stream) ----------


class _EngineStream(Protocol):
    def feed(self, data: bytes) -> tuple[list[tuple[int, int]], int]: ...
    def close(self) -> list[tuple[int, int]]: ...


_PLAIN = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HS_MAX_EXPRESSION = 16000  # hyperscan refuses longer expressions ("Pattern length ...")


def _expression(data: bytes) -> bytes:
    """A hyperscan expression matching exactly ``data``: letters and digits as themselves,
    every other byte as \\xHH (NUL included, which the binding's literal mode cannot take)."""
    return b"".join(bytes([c]) if c in _PLAIN else b"\\x%02x" % c for c in data)


class _HyperscanEngine:
    name = "hyperscan"

    def __init__(self, patterns: Sequence[Pattern], serialized: bytes | None = None) -> None:
        assert _hs is not None
        hits: list[int] = []
        self._probe_hits = hits  # (the callback is kept here: the binding only borrows it)
        self._probe = lambda i, _from, _to, _flags, _ctx: hits.append(i)
        if serialized is not None:
            # hs_deserialize_database, then scratch space: the binding's loadb() allocates none,
            # and a stream over a database without scratch reads a stray pointer (the crash the
            # first attempt at caching met). A Scratch made for the database fixes that.
            try:
                self.db = _hs.loadb(serialized, _hs.HS_MODE_STREAM)
                self.db.scratch = _hs.Scratch(self.db)
            except (_hs.error, TypeError) as exc:
                raise ScanError(f"hyperscan could not load the cached database: {exc}") from None
            return
        exprs = [_expression(p.data) for p in patterns]
        for p, e in zip(patterns, exprs):
            if len(e) > _HS_MAX_EXPRESSION:
                raise ScanError(
                    f"pattern {p.id} ({p.ident}, {p.form}) is {len(p.data)} bytes: "
                    f"too long for hyperscan (use engine='python')"
                )
        self.db = _hs.Database(mode=_hs.HS_MODE_STREAM)
        try:
            self.db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=0)
        except _hs.error as exc:
            raise ScanError(f"hyperscan could not compile the {len(exprs)} patterns: {exc}") from None

    def open(self) -> _HyperscanStream:
        return _HyperscanStream(self.db)

    def finds_any(self, pieces: Sequence[bytes | bytearray]) -> bool:
        # one engine stream over the pieces, without the Python stream around it; the callback
        # only counts (returning true from it would stop the scan with an error)
        hits = self._probe_hits
        s = self.db.stream(match_event_handler=self._probe)
        s.__enter__()
        try:
            for data in pieces:
                s.scan(data)
        except _hs.error as exc:
            raise ScanError(f"hyperscan scan failed: {exc}") from None
        finally:
            s.close()
        found = bool(hits)
        hits.clear()
        return found

    def dump(self) -> bytes:
        return _hs.dumpb(self.db)


class _HyperscanStream:
    __slots__ = ("_callback", "_db", "_hits", "_open", "_pos", "_stream")

    def __init__(self, db: Any) -> None:
        hits: list[tuple[int, int]] = []
        self._hits = hits
        # The binding keeps borrowed references to the database and the callback: both must
        # outlive the stream, so this object holds them. (Database.stream() also keeps one
        # reference too many to its Stream object, a few dozen bytes per stream; building the
        # Stream directly crashes in 0.9.1, and so does opening one Stream a second time after
        # its close, so a Stream serves one engine stream only.) The callback is a closure over
        # the hit list, not a bound method: the Stream the binding leaks then keeps only that
        # list alive, not this object in a reference cycle the garbage collector would have to find.
        self._db = db
        self._callback = lambda i, _from, to, _flags, _ctx: hits.append((i, to))
        self._stream = db.stream(match_event_handler=self._callback)
        self._stream.__enter__()  # hs_open_stream
        self._pos = 0
        self._open = True

    def _take(self) -> list[tuple[int, int]]:
        hits = self._hits
        if not hits:
            return []
        out = hits[:]
        hits.clear()
        return out

    def feed(self, data: bytes) -> tuple[list[tuple[int, int]], int]:
        try:
            self._stream.scan(data)
        except _hs.error as exc:
            raise ScanError(f"hyperscan scan failed at stream offset {self._pos}: {exc}") from None
        self._pos += len(data)
        return self._take(), self._pos

    def close(self) -> list[tuple[int, int]]:
        self._open = False
        try:
            self._stream.close()
        except _hs.error as exc:
            raise ScanError(f"hyperscan could not close a stream at offset {self._pos}: {exc}") from None
        return self._take()

    def __del__(self) -> None:
        # the stream state is C memory that only hs_close_stream frees (a ScanStream dropped
        # without close(), e.g. a flow abandoned on an error)
        if getattr(self, "_open", False):
            self._open = False
            try:
                self._stream.close()
            except Exception:  # noqa: BLE001 - never raise from a finaliser
                pass


class _PythonEngine:
    name = "python"

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        groups: dict[bytes, list[int]] = defaultdict(list)
        for i, p in enumerate(patterns):
            groups[p.data].append(i)
        self.max_len = max((len(d) for d in groups), default=1)
        self.short: list[tuple[bytes, list[int]]] = []
        # gram (as a native uint32) -> [(offset of the gram in the pattern, bytes, indices)]
        self.index: dict[int, list[tuple[int, bytes, list[int]]]] = defaultdict(list)
        for data, idx in groups.items():
            if len(data) < _GRAM + 3:
                self.short.append((data, idx))
                continue
            for d in range(_GRAM):
                gram = int.from_bytes(data[d : d + _GRAM], sys.byteorder)
                self.index[gram].append((d, data, idx))
        self.keys = frozenset(self.index)

    def open(self) -> _PythonStream:
        return _PythonStream(self)

    def finds_any(self, pieces: Sequence[bytes | bytearray]) -> bool:
        return bool(self.search(b"".join(pieces), 0, 0))

    def search(self, text: bytes, new_from: int, base: int) -> list[tuple[int, int]]:
        """Raw matches in ``text`` that end after ``new_from`` (offsets + ``base``)."""
        out: list[tuple[int, int]] = []
        n4 = len(text) // _GRAM * _GRAM
        grams = array.array("I", text[:n4])
        # window by window, so finding where a hit gram is costs a window, not the text
        for lo in range(0, len(grams), _WINDOW):
            hits = self.keys.intersection(grams[lo : lo + _WINDOW])
            lo_b, hi_b = lo * _GRAM, min(n4, (lo + _WINDOW) * _GRAM)
            for g in hits:
                entries = self.index[g]
                gram = g.to_bytes(_GRAM, sys.byteorder)
                a = text.find(gram, lo_b, hi_b)
                while a >= 0:
                    if a % _GRAM == 0:  # aligned: the occurrence the index stands for
                        for d, data, idx in entries:
                            s = a - d
                            e = s + len(data)
                            if s >= 0 and new_from < e <= len(text) and text.startswith(data, s):
                                out.extend((i, base + e) for i in idx)
                    a = text.find(gram, a + 1, hi_b)
        for data, idx in self.short:
            s = text.find(data, max(0, new_from - len(data) + 1))
            while s >= 0:
                out.extend((i, base + s + len(data)) for i in idx)
                s = text.find(data, s + 1)
        return out


if array.array("I").itemsize != _GRAM:  # pragma: no cover - every platform we run on
    raise ImportError("hostctl.wire.scan needs a 4-byte array type 'I'")


class _PythonStream:
    def __init__(self, engine: _PythonEngine) -> None:
        self.e = engine
        self.tail = b""  # the last max_len - 1 scanned bytes
        self.pending: list[bytes] = []
        self.npending = 0
        self.scanned = 0  # stream offset up to which matches are known
        self.batch = max(_MIN_BATCH, engine.max_len)

    def _scan(self) -> list[tuple[int, int]]:
        if not self.npending:
            return []
        text = self.tail + b"".join(self.pending)
        base = self.scanned - len(self.tail)
        out = self.e.search(text, len(self.tail), base)
        self.scanned += self.npending
        self.pending, self.npending = [], 0
        keep = self.e.max_len - 1
        self.tail = text[len(text) - keep :] if keep else b""
        return out

    def feed(self, data: bytes) -> tuple[list[tuple[int, int]], int]:
        if data:
            self.pending.append(data if isinstance(data, bytes) else bytes(data))
            self.npending += len(data)
        out = self._scan() if self.npending >= self.batch else []
        return out, self.scanned

    def close(self) -> list[tuple[int, int]]:
        return self._scan()


# --- the overlap rule ----------------------------------------------------------------------------


class _Resolver:
    """Holds raw matches until no match yet to come can overlap them, drops those that overlap
    a better match of the same identifier (see the module docstring), and releases the rest
    in (start, pattern id) order once nothing undecided or to come can sort before them."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.pending: list[Match] = []  # not decidable yet
        self.kept: list[Match] = []  # decided, waiting for their turn
        self.recent: dict[Identifier, list[Match]] = defaultdict(list)

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.kept)

    def add(self, matches: list[Match], known: int, final: bool = False) -> list[Match]:
        """``known``: every match ending at or before this offset has been added."""
        for m in matches:
            self.pending.append(m)
            self.recent[m.pattern.ident].append(m)
        if not self.pending and not self.kept:
            return []
        # a match yet to come ends after `known`, so it starts at or after `limit`
        limit = known - self.horizon + 1
        if final:
            ready, self.pending = self.pending, []
        else:
            ready = [m for m in self.pending if m.end <= limit]
            if ready:
                self.pending = [m for m in self.pending if m.end > limit]
        self.kept += [m for m in ready if not self._beaten(m)]
        if final:
            self.recent.clear()
            out, self.kept = self.kept, []
        else:
            if ready:
                # what an undecided match (start > limit - horizon) can still overlap
                floor = limit - self.horizon
                for ident in list(self.recent):
                    alive = [m for m in self.recent[ident] if m.end > floor]
                    if alive:
                        self.recent[ident] = alive
                    else:
                        del self.recent[ident]
            first = min((m.start for m in self.pending), default=limit)
            first = min(first, limit)
            out = [m for m in self.kept if m.start < first]
            if out:
                self.kept = [m for m in self.kept if m.start >= first]
        out.sort(key=lambda m: (m.start, m.pattern.id))
        return out

    def _beaten(self, m: Match) -> bool:
        rank = (m.end - m.start, -m.pattern.id, -m.start)
        return any(
            o.start < m.end and m.start < o.end and (o.end - o.start, -o.pattern.id, -o.start) > rank
            for o in self.recent[m.pattern.ident]
        )


# --- public API ---------------------------------------------------------------------------------


class Scanner:
    """Finds ``patterns`` in byte streams. ``engine``: "hyperscan", "python", or "auto"
    (hyperscan when importable). ``engine_name`` says which one runs."""

    def __init__(self, patterns: Sequence[Pattern], *, engine: str = "auto", database: bytes | None = None) -> None:
        """``database``: a hyperscan database serialised by :meth:`serialized` for exactly these
        patterns (`hostctl.wire.cache` keys it by their content), instead of compiling."""
        if engine not in ENGINES:
            raise ScanError(f"unknown scan engine {engine!r} (known: {', '.join(ENGINES)})")
        self.patterns = tuple(patterns)
        for p in self.patterns:
            if not isinstance(p, Pattern) or not p.data:
                raise ScanError(f"not a non-empty Pattern: {p!r}")
        ids = [p.id for p in self.patterns]
        if len(set(ids)) != len(ids):
            raise ScanError("pattern ids must be unique within a scanner")
        if engine == "hyperscan" and _hs is None:
            raise ScanError(
                "the hyperscan engine was asked for, and the hyperscan module is "
                "not importable (pip install hyperscan; or use engine='python')"
            )
        self.engine_name = (
            "hyperscan" if engine == "auto" and _hs is not None else ("python" if engine == "auto" else engine)
        )
        self.max_len = max((len(p.data) for p in self.patterns), default=1)
        self._engine: Any = None
        if self.patterns:
            self._engine = (
                _HyperscanEngine(self.patterns, database)
                if self.engine_name == "hyperscan"
                else _PythonEngine(self.patterns)
            )

    def serialized(self) -> bytes | None:
        """The compiled hyperscan database as bytes (None for the Python engine)."""
        return self._engine.dump() if isinstance(self._engine, _HyperscanEngine) else None

    def stream(self, *, raw: bool = False) -> ScanStream:
        """A new stream (one per flow direction). ``raw`` returns every occurrence of every
        pattern, without the overlap rule, as soon as the engine reports it."""
        return ScanStream(self, raw=raw)

    def scan(self, data: bytes, *, raw: bool = False) -> list[Match]:
        """The matches in one complete buffer (a datagram, a file read whole)."""
        with self.stream(raw=raw) as s:
            out = s.feed(data)
            out += s.close()
        return out

    def finds_any(self, *pieces: bytes | bytearray) -> bool:
        """Whether any pattern occurs in the ``pieces`` read one after the other. False means a
        stream fed just one of them finds nothing: the cheap test before making one, for the many
        short streams (both directions of a flow, each read whole at its end) that hold no
        identifier. (True may come from a match across two pieces.)"""
        if self._engine is None:
            return False
        return self._engine.finds_any(pieces)


class ScanStream:
    """One byte stream being scanned; see the module docstring for what ``feed`` returns."""

    __slots__ = ("_base", "_closed", "_es", "_res", "offset", "raw", "scanner")

    def __init__(self, scanner: Scanner, *, raw: bool = False) -> None:
        self.scanner = scanner
        self.raw = raw
        self.offset = 0  # stream offset of the next byte fed
        self._base = 0  # stream offset where the engine stream began
        self._res: _Resolver | None = None  # made with the first match (most streams have none)
        self._es: _EngineStream | None = self._open()
        self._closed = False

    @property
    def _resolver(self) -> _Resolver:
        if self._res is None:
            self._res = _Resolver(self.scanner.max_len)
        return self._res

    def _open(self) -> _EngineStream | None:
        return self.scanner._engine.open() if self.scanner._engine is not None else None

    def __enter__(self) -> ScanStream:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close()

    def _matches(self, hits: list[tuple[int, int]]) -> list[Match]:
        pats = self.scanner.patterns
        base = self._base
        return [Match(pats[i], base + end - len(pats[i].data), base + end) for i, end in hits]

    def _emit(self, hits: list[tuple[int, int]], known: int, final: bool = False) -> list[Match]:
        if not hits and self._res is None:  # no match yet, none now: nothing to hold or release
            return []
        matches = self._matches(hits)
        if self.raw:
            matches.sort(key=lambda m: (m.start, m.pattern.id))
            return matches
        return self._resolver.add(matches, known, final)

    def feed(self, data: bytes) -> list[Match]:
        """Scan the next ``data``; the matches now final."""
        if self._closed:
            raise ScanError(f"feed on a closed scan stream (at offset {self.offset})")
        self.offset += len(data)
        if self._es is None or not data:
            return []
        hits, known = self._es.feed(data)
        if not hits and (self._res is None or not self._res.busy):  # the common case: nothing to do
            return []
        return self._emit(hits, self._base + known)

    def gap(self, length: int) -> list[Match]:
        """``length`` bytes of the stream are missing (a capture gap): nothing matches across
        it. Returns the matches made final by it."""
        if self._closed:
            raise ScanError(f"gap on a closed scan stream (at offset {self.offset})")
        if length < 0:
            raise ScanError(f"negative gap length {length} at offset {self.offset}")
        out = self._finish()
        self.offset += length
        self._base = self.offset
        self._es = self._open()
        return out

    def close(self) -> list[Match]:
        """End of the stream: the remaining matches. Closing twice is harmless."""
        if self._closed:
            return []
        out = self._finish()
        self._closed = True
        return out

    def _finish(self) -> list[Match]:
        hits = self._es.close() if self._es is not None else []
        self._es = None
        return self._emit(hits, self.offset, final=True)
