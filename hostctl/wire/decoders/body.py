"""Content codings (RFC 9110 section 8.4): ``gzip``, ``deflate`` (zlib as the RFC says, or raw
deflate as some servers send it: told apart by the zlib header), ``br`` (RFC 7932) and
``zstd`` (RFC 8878), each a streaming decoder with the bounds of `Limits`.

A decoder's ``feed(data) -> bytes`` returns the decoded bytes so far; it raises `Bomb` when the
output passes the size or ratio bound and `Malformed` when the input is not that coding. Output
per call is bounded: zlib and brotli are asked for at most the bytes the budget has left, and
zstd (whose Python binding has no output bound) is fed 256 input bytes at a time, which a zstd
frame can inflate to at most a few MiB (RLE blocks of 128 KiB each).
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from typing import Any

from hostctl.wire.decoders.base import LIMITS, Limits


def _optional_module(name: str) -> Any:
    """The module, or None where it is not installed (its users check first). brotli and zstandard
    are dependencies; a missing one is a note on the bodies that needed it."""
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover
        return None


_brotli = _optional_module("brotli")
_zstd = _optional_module("zstandard")

__all__ = ["Bomb", "CODINGS", "Malformed", "ZlibDecoder", "coding", "looks_compressed"]


class Malformed(Exception):
    """Inside the decoders: input that is not what its layer says."""


class Bomb(Exception):
    """Inside the decoders: a message that decodes past the bounds."""


class _Bounded:
    name = ""

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits
        self.consumed = 0
        self.produced = 0

    def _budget(self) -> int:
        lim = self.limits
        by_ratio = max(lim.ratio_floor, lim.max_ratio * max(1, self.consumed))
        return min(lim.max_decoded, by_ratio) - self.produced

    def _count(self, out: bytes) -> bytes:
        self.produced += len(out)
        if self._budget() < 0:
            raise Bomb(
                f"{self.name}: over {self.produced} bytes from {self.consumed} "
                f"(bounds {self.limits.max_decoded} bytes, {self.limits.max_ratio}:1)"
            )
        return out

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def close(self) -> bytes:
        return b""


class ZlibDecoder(_Bounded):
    """gzip (wbits 31), zlib (15) or raw deflate (-15), chosen from the first bytes."""

    def __init__(self, name: str, limits: Limits = LIMITS) -> None:
        super().__init__(limits)
        self.name = name
        self.d: zlib._Decompress | None = None
        self.head = b""
        self.ended = False

    def _open(self, head: bytes) -> None:
        if self.name == "gzip":
            wbits = 31
        elif len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
            wbits = 15  # RFC 1950 header: zlib-wrapped deflate
        else:
            wbits = -15  # raw deflate (what some servers send as "deflate")
        self.d = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> bytes:
        if self.ended:
            return b""
        if self.d is None:
            self.head += data
            if len(self.head) < 2:
                return b""
            data, self.head = self.head, b""
            self._open(data)
        assert self.d is not None
        self.consumed += len(data)
        out = []
        try:
            while data:
                budget = self._budget()
                piece = self.d.decompress(data, max(1, budget + 1))
                out.append(self._count(piece))
                data = self.d.unconsumed_tail
                if self.d.eof:
                    self.ended = True  # trailing bytes after the stream: ignored
                    break
        except zlib.error as exc:
            raise Malformed(f"{self.name}: {exc}") from None
        return b"".join(out)

    def close(self) -> bytes:
        out = b""
        if self.d is None and self.head:
            out = self.feed(b"")
        if self.d is not None and not self.ended:
            try:
                out += self._count(self.d.flush())
            except zlib.error as exc:
                raise Malformed(f"{self.name}: {exc}") from None
        return out


class _Brotli(_Bounded):
    name = "br"

    def __init__(self, limits: Limits = LIMITS) -> None:
        super().__init__(limits)
        if _brotli is None:
            raise Malformed("br: the brotli package is not installed")
        self.d = _brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        self.consumed += len(data)
        out = []
        try:
            if self.d.is_finished():
                return b""
            out.append(self._count(self.d.process(data, output_buffer_limit=max(1, self._budget() + 1))))
            while not self.d.can_accept_more_data() and not self.d.is_finished():
                more = self.d.process(b"", output_buffer_limit=max(1, self._budget() + 1))
                out.append(self._count(more))
                if not more:
                    break
        except _brotli.error as exc:
            raise Malformed(f"br: {exc}") from None
        return b"".join(out)


class _Zstd(_Bounded):
    name = "zstd"
    STEP = 256

    def __init__(self, limits: Limits = LIMITS) -> None:
        super().__init__(limits)
        if _zstd is None:
            raise Malformed("zstd: the zstandard package is not installed")
        self.d = _zstd.ZstdDecompressor(max_window_size=1 << 27).decompressobj()

    def feed(self, data: bytes) -> bytes:
        out = []
        try:
            for i in range(0, len(data), self.STEP):
                piece = data[i : i + self.STEP]
                self.consumed += len(piece)
                out.append(self._count(self.d.decompress(piece)))
        except _zstd.ZstdError as exc:
            raise Malformed(f"zstd: {exc}") from None
        return b"".join(out)


CODINGS: dict[str, Callable[[Limits], _Bounded]] = {
    "gzip": lambda lim: ZlibDecoder("gzip", lim),
    "x-gzip": lambda lim: ZlibDecoder("gzip", lim),
    "deflate": lambda lim: ZlibDecoder("deflate", lim),
    "zlib": lambda lim: ZlibDecoder("zlib", lim),
    "br": _Brotli,
    "zstd": _Zstd,
}


def coding(name: str, limits: Limits = LIMITS) -> _Bounded | None:
    """A fresh decoder for content coding ``name`` (case-insensitive); None if unknown."""
    make = CODINGS.get(name.strip().lower())
    return make(limits) if make else None


def looks_compressed(head: bytes) -> str | None:
    """ "gzip" or "zlib" when ``head`` starts with that format's header (RFC 1952: 1f 8b 08;
    RFC 1950: CM 8, a window of at most 32 KiB, FCHECK so the first two bytes are a multiple of
    31, no preset dictionary), else None."""
    if head[:3] == b"\x1f\x8b\x08":
        return "gzip"
    if (
        len(head) >= 2
        and head[0] in (0x08, 0x18, 0x28, 0x38, 0x48, 0x58, 0x68, 0x78)
        and (head[0] << 8 | head[1]) % 31 == 0
        and not head[1] & 0x20
    ):
        return "zlib"
    return None
