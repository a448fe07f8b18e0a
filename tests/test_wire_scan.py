"""The scanner: every planted form found exactly once per occurrence with its form, nothing in
random data, both engines identical however the stream is cut, bounded memory."""

from __future__ import annotations

import base64
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostctl.emulator.identity import luhn_digit
from hostctl.model.protections import protect
from hostctl.wire.identifiers import Identifier, Pattern, patterns_by_form, patterns_for
from hostctl.wire.scan import Match, ScanError, Scanner, hyperscan_available

ENGINES = ["hyperscan", "python"]
pytestmark = pytest.mark.skipif(not hyperscan_available(), reason="hyperscan not importable")

IMEI = "86480402012345" + luhn_digit("86480402012345")
ICCID = "898600921234567890" + luhn_digit("898600921234567890")
IDENTS = [
    Identifier("msisdn", "+8613800138000", "hs1 sim0 msisdn"),
    Identifier("number", "+447700900123", "contact"),
    Identifier("imei", IMEI, "hs1 imei0"),
    Identifier("imsi", "460001234567890", "hs1 sim0 imsi"),
    Identifier("iccid", ICCID, "hs1 sim0 iccid"),
    Identifier("text", "Dinner at Rosa's? 你好", "message"),
]
PATTERNS = patterns_for(IDENTS)
SCANNERS = {e: Scanner(PATTERNS, engine=e) for e in ENGINES}


def key(matches: list[Match]) -> list[tuple[int, int, int]]:
    return [(m.pattern.id, m.start, m.end) for m in matches]


def scan_chunks(scanner: Scanner, chunks: list[bytes], raw: bool = False) -> list[Match]:
    out: list[Match] = []
    with scanner.stream(raw=raw) as s:
        for c in chunks:
            out += s.feed(c)
        out += s.close()
    return out


def plant(patterns: list[Pattern], rng: random.Random) -> tuple[bytes, list[tuple[int, int, int]]]:
    """Each pattern once, between '|' separators in random filler: '|' is in no text form of
    these identifiers, so filler cannot complete a longer form around a planted one (a trunk
    '0' before a national number would be one)."""
    buf, expected = bytearray(), []
    for p in patterns:
        buf += rng.randbytes(rng.randrange(0, 40)) + b"|"
        expected.append((p.id, len(buf), len(buf) + len(p.data)))
        buf += p.data + b"|"
    buf += rng.randbytes(30)
    return bytes(buf), sorted(expected, key=lambda e: (e[1], e[0]))


@pytest.mark.parametrize("engine", ENGINES)
def test_every_form_of_every_identifier_is_found_once_with_its_form(engine: str) -> None:
    data, expected = plant(PATTERNS, random.Random(5))
    found = SCANNERS[engine].scan(data)
    assert key(found) == expected
    for m in found:
        assert data[m.start : m.end] == m.pattern.data
    # every form name of the identifiers is among the patterns found (aliases included)
    names = {(m.ident, f) for m in found for f in m.pattern.forms}
    assert names == set(patterns_by_form(PATTERNS))


def test_overlapping_forms_count_once_as_the_most_specific() -> None:
    """The national digits inside the URL-encoded E.164 number, the E.164 text inside its
    own intl00 cousin... each occurrence is one finding, the longest form."""
    cn = IDENTS[0]
    idx = patterns_by_form(PATTERNS)
    body = (
        b'{"phone":"%2B8613800138000","alt":"008613800138000","n":"13800138000",'
        b'"h":"' + protect("+8613800138000", ["sha1", "base64"]).encode() + b'"}'
    )
    for engine, scanner in SCANNERS.items():
        found = scanner.scan(body)
        assert [(m.form, m.ident) for m in found] == [
            ("e164:url", cn),
            ("intl00:ascii", cn),
            ("national:ascii", cn),
            ("e164:sha1>base64", cn),
        ], engine
        assert found[3].pattern is idx[(cn, "e164:sha1>base64")]
        raw = scanner.scan(body, raw=True)
        assert len(raw) == 8  # url: cc-no-plus + national inside; intl00: the same


def test_a_base64_blob_of_a_report_reveals_each_identifier_once() -> None:
    report = json.dumps({"imei": IMEI, "imsi": "460001234567890", "phone": "+447700900123"})
    for lead in range(3):
        blob = base64.b64encode(b"x" * lead + report.encode())
        for scanner in SCANNERS.values():
            found = scanner.scan(b"data=" + blob)
            assert sorted(str(m.ident) for m in found) == ["contact", "hs1 imei0", "hs1 sim0 imsi"]
            forms = {str(m.ident): m.form for m in found}
            assert forms["contact"].startswith("e164:base64/")
            assert forms["hs1 imei0"].startswith("base64/")


def test_different_identifiers_never_hide_each_other() -> None:
    a, b = Identifier("text", "meet 13800138000 now", "msg"), IDENTS[0]
    pats = patterns_for([a, b])
    data = b"...meet 13800138000 now..."
    for engine in ENGINES:
        found = Scanner(pats, engine=engine).scan(data)
        assert sorted((str(m.ident), m.form) for m in found) == [
            ("hs1 sim0 msisdn", "national:ascii"),
            ("msg", "ascii"),
        ]


def test_overlapping_readings_of_one_identifier_give_its_best_one() -> None:
    x = Identifier("text", "synthetic", "x")
    hand = [
        Pattern(0, x, "p0", b"abcdefgh"),
        Pattern(1, x, "p1", b"efghijkl"),
        Pattern(2, x, "p2", b"cdefghij"),
        Pattern(3, x, "p3", b"abcdefghijk"),
    ]
    for engine in ENGINES:
        # equally long: the lower id wins; longer: the longer one, contained or not
        assert key(Scanner(hand[:2], engine=engine).scan(b"abcdefghijkl")) == [(0, 0, 8)]
        assert key(Scanner(hand[1:], engine=engine).scan(b"abcdefghijkl")) == [(3, 0, 11)]
        # a chain p0 < p2 < p3 ... all one occurrence; disjoint copies are two
        assert key(Scanner(hand, engine=engine).scan(b"abcdefghijkl--abcdefgh")) == [(3, 0, 11), (0, 14, 22)]


@pytest.mark.parametrize("engine", ENGINES)
def test_utf16le_after_a_nul_is_not_also_reported_as_utf16be(engine: str) -> None:
    """An Android Parcel string: int32 length, then UTF-16LE. The NUL before the text makes it
    readable as UTF-16BE one byte earlier; it is one occurrence, and it is UTF-16LE."""
    text = "+8613800138000"
    parcel = len(text).to_bytes(4, "little") + text.encode("utf-16-le") + b"\x00\x00"
    found = SCANNERS[engine].scan(b"\x00\x00\x00\x00" + parcel)
    assert [(m.form, m.start) for m in found] == [("e164:utf16le", 8)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_data_yields_no_finding(data: bytes) -> None:
    for scanner in SCANNERS.values():
        assert scanner.scan(data, raw=True) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.data())
def test_any_chunking_gives_the_same_findings_in_both_engines(rng: random.Random, draw: st.DataObject) -> None:
    chosen = rng.sample(PATTERNS, 12)
    data, expected = plant(chosen, rng)
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=40)))
    chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)])]
    results = {e: key(scan_chunks(SCANNERS[e], chunks)) for e in ENGINES}
    assert results["hyperscan"] == results["python"] == expected
    assert key(SCANNERS["python"].scan(data)) == expected


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.text("ab", min_size=1, max_size=10), min_size=1, max_size=8, unique=True),
    st.text("ab", max_size=300),
    st.lists(st.integers(0, 300), max_size=10),
)
def test_engines_agree_on_dense_overlapping_matches(words: list[str], text: str, cuts: list[int]) -> None:
    """Patterns of 1-10 letters over a two-letter alphabet match everywhere and overlap each
    other and themselves: the hardest case for the Python engine's gram index and short path."""
    x, y = Identifier("text", "x-synthetic", "x"), Identifier("text", "y-synthetic", "y")
    pats = [Pattern(i, x if i % 2 else y, f"w{i}", w.encode()) for i, w in enumerate(words)]
    data = text.encode()
    bounds = sorted(c for c in cuts if c <= len(data))
    chunks = [data[i:j] for i, j in zip([0, *bounds], [*bounds, len(data)])]
    expected_raw = sorted(
        (p.id, s, s + len(p.data)) for p in pats for s in range(len(data)) if data.startswith(p.data, s)
    )
    out = {}
    for engine in ENGINES:
        sc = Scanner(pats, engine=engine)
        assert sorted(key(scan_chunks(sc, chunks, raw=True))) == expected_raw
        out[engine] = key(scan_chunks(sc, chunks))
        assert out[engine] == key(sc.scan(data))
    assert out["hyperscan"] == out["python"]
    # the rule, stated directly: kept = raw matches that no better overlapping match of the
    # same identifier beats (longer, then lower id, then earlier)
    ident = {p.id: p.ident for p in pats}
    kept = [
        (i, s, e)
        for i, s, e in expected_raw
        if not any(
            ident[j] == ident[i] and s2 < e and s < e2 and (e2 - s2, -j, -s2) > (e - s, -i, -s)
            for j, s2, e2 in expected_raw
        )
    ]
    assert out["python"] == sorted(kept, key=lambda t: (t[1], t[0]))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_pattern_split_byte_by_byte_across_feeds_is_found(engine: str) -> None:
    p = patterns_by_form(PATTERNS)[(IDENTS[0], "e164:utf16le")]
    data = b"\x00" * 10 + p.data + b"\xff" * 5
    found = scan_chunks(SCANNERS[engine], [bytes([c]) for c in data])
    assert [(m.form, m.start) for m in found] == [("e164:utf16le", 10)]


@pytest.mark.parametrize("engine", ENGINES)
def test_nothing_matches_across_a_gap_and_offsets_count_it(engine: str) -> None:
    p = patterns_by_form(PATTERNS)[(IDENTS[2], "ascii")]
    with SCANNERS[engine].stream() as s:
        got = s.feed(b"xx" + p.data[:6])
        got += s.gap(100)
        got += s.feed(p.data[6:] + b"yy" + p.data)
        got += s.close()
    assert [(m.form, m.start, m.end) for m in got] == [
        ("ascii", 108 + len(p.data) - 6 + 2, 108 + 2 * len(p.data) - 6 + 2)
    ]


def test_python_stream_memory_is_bounded() -> None:
    scanner = SCANNERS["python"]
    rng = random.Random(1)
    with scanner.stream() as s:
        for _ in range(400):
            s.feed(rng.randbytes(5000))
            es = s._es
            assert len(es.tail) <= scanner.max_len - 1
            assert es.npending < max(4096, scanner.max_len)
            assert sum(map(len, s._resolver.recent.values())) == 0


def test_errors_name_the_problem() -> None:
    with pytest.raises(ScanError, match="unknown scan engine 'grep'"):
        Scanner(PATTERNS, engine="grep")
    with pytest.raises(ScanError, match="unique"):
        Scanner([PATTERNS[0], PATTERNS[0]])
    s = SCANNERS["python"].stream()
    s.close()
    with pytest.raises(ScanError, match="closed"):
        s.feed(b"x")
    assert s.close() == []
    assert Scanner([], engine="hyperscan").scan(b"anything at all") == []
    huge = Pattern(0, IDENTS[5], "hand-made", bytes(range(256)) * 20)
    with pytest.raises(ScanError, match="pattern 0 .message, hand-made. is 5120 bytes: too long"):
        Scanner([huge], engine="hyperscan")
    assert key(Scanner([huge], engine="python").scan(b"x" + huge.data)) == [(0, 1, 5121)]
    assert Scanner(PATTERNS).engine_name == "hyperscan"
