"""Protocol Buffers, best effort, without a schema (the wire format of
https://protobuf.dev/programming-guides/encoding/): a decoded message whose bytes parse, all of
them, as protobuf fields is walked. Integer fields (varints, and fixed64 little-endian) are
compared with the identifiers as numbers: a phone number without ``+`` (``8613912345678``), its
national number, an IMEI (15 digits, and the 14 without the check digit), an IMSI, an ICCID.
Length-delimited fields that parse as messages are walked in turn (nesting up to ``MAX_DEPTH``);
their bytes, text included, were scanned already as part of the message that holds them.

Guard against chance: only numbers of at least ``MIN_DIGITS`` (8) digits are compared (a random
64-bit integer equals a given 8-digit value with odds of one in 2**64), and a walk only happens
when the whole message parses (random bytes rarely do: every tag must carry a wire type of 0,
1, 2 or 5 and a field number, and every length must fit).

A finding's chain ends in ``protobuf-varint`` (or ``protobuf-fixed64``); its offset is the
field's value in the walked message.
"""

from __future__ import annotations

import zlib
from typing import Any

from hostctl.wire.decoders.base import FEED_STEP, Out
from hostctl.wire.decoders.body import Bomb, Malformed, ZlibDecoder, looks_compressed
from hostctl.wire.decoders.registry import REGISTRY
from hostctl.wire.identifiers import NUMBER_KINDS, Pattern, number_variants
from hostctl.wire.scan import Match

__all__ = ["MIN_DIGITS", "parse", "walk"]

MIN_DIGITS = 8
MAX_DEPTH = 8
MAX_FIELDS = 100_000

_targets_cache: dict[int, dict[int, list[Pattern]]] = {}


def _targets(scanner: Any) -> dict[int, list[Pattern]]:
    """value -> synthetic patterns (one per identifier and number variant) for a scanner."""
    key = id(scanner)
    hit = _targets_cache.get(key)
    if hit is not None and hit.get(-1) is scanner:  # the scanner itself under -1: id() may be reused
        return hit
    out: dict[int, list] = {-1: scanner}
    seen: set = set()
    for p in scanner.patterns:
        ident = p.ident
        if ident in seen:
            continue
        seen.add(ident)
        if ident.kind in NUMBER_KINDS:
            texts = {k: v for k, v in number_variants(ident.value).items() if k in ("cc-no-plus", "national")}
        elif ident.kind == "imei":
            texts = {"": ident.value, "imei14": ident.value[:14]}
        elif ident.kind in ("imsi", "iccid"):
            texts = {"": ident.value}
        else:
            continue
        for variant, text in texts.items():
            digits = text.lstrip("0")
            if len(digits) < MIN_DIGITS or not digits.isdigit() or int(digits) >= 1 << 64:
                continue
            form = f"{variant}:protobuf-int" if variant else "protobuf-int"
            out.setdefault(int(digits), []).append(
                Pattern(-1, ident, form, b"", (form,), variant, text, ("protobuf-int",))
            )
    _targets_cache.clear()
    _targets_cache[key] = out
    return out


def _varint(b: bytes, p: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if p >= len(b) or shift > 63:
            raise ValueError("truncated varint")
        c = b[p]
        p += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, p
        shift += 7


def parse(b: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, Any, int]] | None:
    """The fields of ``b[start:end]`` as (field number, wire type, value, value offset), or None
    when those bytes are not entirely protobuf fields. Length-delimited values are (offset, end)."""
    end = len(b) if end is None else end
    p, out = start, []
    try:
        while p < end:
            tag, p = _varint(b, p)
            num, wt = tag >> 3, tag & 7
            if num == 0 or num >= 1 << 29:
                return None
            at = p
            v: int | tuple[int, int]  # a number, or a length-delimited field's (start, end)
            if wt == 0:
                v, p = _varint(b, p)
            elif wt == 1:
                v, p = int.from_bytes(b[p : p + 8], "little"), p + 8
            elif wt == 2:
                n, p = _varint(b, p)
                v, p = (p, p + n), p + n
            elif wt == 5:
                v, p = int.from_bytes(b[p : p + 4], "little"), p + 4
            else:
                return None
            if p > end:
                return None
            out.append((num, wt, v, at))
            if len(out) > MAX_FIELDS:
                return None
    except ValueError:
        return None
    return out


def walk(
    b: bytes,
    targets: dict[int, list[Pattern]],
    depth: int = 0,
    start: int = 0,
    end: int | None = None,
    fields: list | None = None,
) -> list[tuple[Pattern, int, int, str]]:
    """(pattern, start, end, kind) for each integer field equal to a target, recursing."""
    fields = parse(b, start, end) if fields is None else fields
    hits: list[tuple[Pattern, int, int, str]] = []
    for _num, wt, v, at in fields or ():
        if wt in (0, 1) and v in targets:
            n = at + 8  # fixed64; a varint ends at its first byte < 0x80
            if wt == 0:
                n = at
                while b[n] & 0x80:
                    n += 1
                n += 1
            kind = "protobuf-varint" if wt == 0 else "protobuf-fixed64"
            hits.extend((p, at, n, kind) for p in targets[v])
        elif wt == 2 and depth < MAX_DEPTH and v[1] > v[0]:
            sub = parse(b, v[0], v[1])
            if sub:
                hits.extend(walk(b, targets, depth + 1, v[0], v[1], sub))
    return hits


@REGISTRY.walker("protobuf", priority=50)
def _protobuf_walker(conn: Any, span: Any, data: bytes) -> None:
    scanner = conn.sink.scanner
    targets = _targets(scanner)
    if len(targets) <= 1:
        return
    fields = parse(data)
    if not fields:
        return
    for pattern, s, e, kind in walk(data, targets, fields=fields):
        sub = conn.span(span.direction, span.chain + (kind,), span.wire_offset)
        conn.sink.layer_finding(Match(pattern, s, e), sub, s)


# Headers an embedded blob is recognised by anywhere in a message. gzip (RFC 1952 2.3.1): ID1 ID2
# CM = 1f 8b 08 and a FLG byte whose reserved bits (0xe0) are zero. zlib (RFC 1950 2.2): only the
# four headers zlib itself writes with its default 32 KiB window (CMF 0x78; FLG 01 / 5e / 9c / da
# for the levels 0-1, 2-5, 6 and 7-9, no preset dictionary); a zlib header at a message's start
# is recognised in all its forms (`looks_compressed`).
_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZLIB_HEADS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
_CODECS = frozenset({"gzip", "zlib", "deflate", "x-gzip"})
MAX_BLOBS = 32  # candidate headers tried per message (a chance header costs one failed inflate)
MAX_NESTED = 3  # compression layers in a chain below which an embedded blob is still looked for


def _candidates(data: bytes) -> list[tuple[int, str]]:
    """(offset, kind) of every place a gzip or zlib stream may start, in order, at most
    ``MAX_BLOBS``."""
    found: list[tuple[int, str]] = []
    kind0 = looks_compressed(data)
    if kind0 is not None:
        found.append((0, kind0))
    if data.isascii():
        # (fast: 8 bytes a step) ASCII text (JSON, XML, a form) is not searched further in: a
        # gzip header holds 0x8b and a stored block's NLEN a byte over 0x7f, so neither fits in
        # ASCII; a zlib blob of fixed-Huffman codes can (measured: 332 of 200,000 zlib streams
        # of a short text with a 15-digit number, levels 1/6/9, were all ASCII), and is missed
        # there: the price of not running five searches over every text body
        return found
    i = data.find(_GZIP_MAGIC, 1)
    while i >= 0 and len(found) < MAX_BLOBS:
        if i + 3 < len(data) and not data[i + 3] & 0xE0:
            found.append((i, "gzip"))
        i = data.find(_GZIP_MAGIC, i + 1)
    for head in _ZLIB_HEADS:
        i = data.find(head, 1)
        while i >= 0 and len(found) < 4 * MAX_BLOBS:
            found.append((i, "zlib"))
            i = data.find(head, i + 1)
    found.sort()
    return found[:MAX_BLOBS]


@REGISTRY.walker("embedded-compressed", priority=60)
def _compressed_walker(conn: Any, span: Any, data: bytes) -> None:
    """gzip / zlib blobs inside a message: the whole message (an app compressing before its own
    framing) or a blob further in (a protobuf ``bytes`` field, a multipart part, a length-prefixed
    record), recognised by its header. A header that does not inflate is a chance match and is
    dropped without a note; one that does is a decoded message of its own (chain ``...>gzip`` /
    ``...>zlib``, offsets in the inflated bytes), walked in turn up to ``MAX_NESTED`` compression
    layers. Bytes a stored (level 0) block leaves as they were are the outer message's finding."""
    if sum(1 for c in span.chain if c in _CODECS) >= MAX_NESTED:
        return
    skip_to = 0
    for pos, kind in _candidates(data):
        if pos < skip_to:
            continue  # inside a blob already inflated
        dec = ZlibDecoder(kind, conn.limits)
        step = min(FEED_STEP, len(data) - pos)
        try:
            first = dec.feed(data[pos : pos + step])
        except Malformed:
            continue  # a chance header
        except Bomb as exc:
            conn.note(conn.span(span.direction, span.chain + (kind,), span.wire_offset), "bomb", str(exc))
            continue
        if not first and not dec.ended and pos + step >= len(data):
            continue
        out = Out(conn, conn.span(span.direction, span.chain + (kind,), span.wire_offset))
        out.encoded(data[pos:])
        out.write(first)
        try:
            for i in range(pos + step, len(data), FEED_STEP):  # bounded output pieces
                if dec.ended:
                    break
                out.write(dec.feed(data[i : i + FEED_STEP]))
            out.write(dec.close())
        except (Bomb, Malformed, zlib.error) as exc:
            if isinstance(exc, Bomb):
                out.note("bomb", str(exc))
        out.close()
        if dec.ended and dec.d is not None:
            skip_to = pos + dec.consumed - len(dec.d.unused_data)
        else:
            break  # the blob runs to the message's end
