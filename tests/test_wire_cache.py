"""The start-up cache for many identifiers (issue 15.6): a hyperscan database serialised and
loaded back finds exactly what the compiled one finds (the binding's loadb needs scratch space
allocated for it, which is what made it crash before); entries are private, keyed by content,
and a damaged entry is rebuilt, never trusted."""

from __future__ import annotations

import os
import stat

import pytest

from hostctl.wire.cache import cached_scanner
from hostctl.wire.identifiers import Identifier, patterns_for
from hostctl.wire.scan import Scanner, hyperscan_available

IDS = [Identifier("imei", "490154203237518", "imei"), Identifier("msisdn", "+8613912345678", "num")]
TEXT = b"x=490154203237518&n=139-1234-5678&h=" + patterns_for(IDS)[40].data + b"&end"

pytestmark = pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed")


def _found(scanner):
    s = scanner.stream()
    out = []
    for i in range(0, len(TEXT), 7):  # in pieces: stream state must survive the load
        out += s.feed(TEXT[i : i + 7])
    out += s.close()
    return [(m.pattern.id, m.start, m.end) for m in out]


def test_a_loaded_database_finds_what_the_compiled_one_finds():
    pats = patterns_for(IDS)
    compiled = Scanner(pats, engine="hyperscan")
    loaded = Scanner(pats, engine="hyperscan", database=compiled.serialized())
    assert _found(loaded) == _found(compiled) != []
    assert _found(Scanner(pats, engine="python")) == _found(loaded)


def test_cache_round_trip_private_and_keyed_by_content(tmp_path):
    d = tmp_path / "c"
    pats, sc, how = cached_scanner(IDS, engine="hyperscan", directory=d)
    assert how == "built"
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in d.iterdir())
    pats2, sc2, how2 = cached_scanner(IDS, engine="hyperscan", directory=d)
    assert how2 == "cached"
    assert [(p.id, p.ident, p.form, p.data, p.steps) for p in pats2] == [
        (p.id, p.ident, p.form, p.data, p.steps) for p in pats
    ]
    assert _found(sc2) == _found(sc)
    _, _, how3 = cached_scanner(IDS[:1], engine="hyperscan", directory=d)  # other identifiers: other key
    assert how3 == "built" and len(list(d.iterdir())) == 4


def test_a_damaged_entry_is_rebuilt(tmp_path):
    d = tmp_path / "c"
    _, sc, _ = cached_scanner(IDS, engine="hyperscan", directory=d)
    for f in d.iterdir():
        f.write_bytes(b"garbage")
    pats, sc2, how = cached_scanner(IDS, engine="hyperscan", directory=d)
    assert how == "built" and _found(sc2) == _found(sc)
