"""The per-flow shortcuts of the wire-check give what the long way gives: a decoder stack made
only when a decoder claims the stream (`Connection.claims`), also when the claim comes late; scan
streams opened at the first batch (offsets of a flow joined mid-stream kept); the bare-engine test
for any pattern (`Scanner.finds_any`) before a stream is made; the registry's remembered verdicts
and its `name_of(among=...)` short cut; flows past the record cap still correlated with the agent's
events."""

from __future__ import annotations

import gzip
import random

import h2.config
import h2.connection
import pytest

from hostctl.wire import check as check_mod
from hostctl.wire.analysis import SNIFF_BYTES, Connection
from hostctl.wire.check import WireCheck, _Consumer
from hostctl.wire.decoders.registry import REGISTRY, WAIT
from hostctl.wire.decrypt import TlsLayer
from hostctl.wire.flows import Flow, FlowKey
from hostctl.wire.identifiers import Identifier, patterns_for
from hostctl.wire.pcapwrite import PcapngWriter, TcpConversation
from hostctl.wire.scan import Scanner, hyperscan_available
from hostctl.wire.span import Origin

IMEI = "490154203237518"
NUMBER = "+8613912345678"
IDS = [Identifier("imei", IMEI, "hs1 imei0"), Identifier("msisdn", NUMBER, "hs1 number0")]
ENGINES = ["python"] + (["hyperscan"] if hyperscan_available() else [])


def _h2_pieces() -> list[tuple[str, bytes]]:
    """An HTTP/2 conversation (prior knowledge) made with the h2 library: the IMEI in a request
    header, the number in a gzip'd response body."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(
        1,
        [(":method", "GET"), (":path", "/v1"), (":scheme", "http"), (":authority", "api.example"), ("x-id", IMEI)],
        end_stream=True,
    )
    c2s = client.data_to_send()
    server.initiate_connection()
    server.receive_data(c2s)
    server.send_headers(1, [(":status", "200"), ("content-encoding", "gzip")])
    server.send_data(1, gzip.compress(b'{"n": "' + NUMBER.encode() + b'"}'), end_stream=True)
    return [("c2s", c2s), ("s2c", server.data_to_send())]


def _consume(wc: WireCheck, pieces, *, port: int, offsets: dict[str, int] | None = None) -> list[dict]:
    """Feeds ``pieces`` [(direction, bytes)] to the wire-check's flow consumer as one TCP flow."""
    consumer = _Consumer(wc, "t.pcapng")
    consumer.tls = TlsLayer(wc.keylog, None)
    flow = Flow(1, FlowKey("tcp", ("10.0.0.2", 40000), ("10.9.0.1", port)), 1.0)
    consumer.flow_start(flow)
    at = dict(offsets or {"c2s": 0, "s2c": 0})
    for i, (direction, data) in enumerate(pieces):
        consumer.data(flow, direction, at[direction], data, 1.0 + i / 1000)
        at[direction] += len(data)
    consumer.flow_end(flow)
    return [f for f in wc.findings if f["flow"] == 1]


def _direct(wc: WireCheck, pieces, *, port: int) -> list[tuple]:
    """What a decoder stack made up front (the way before the shortcut) reports for ``pieces``."""
    seen: list[dict] = []
    conn = wc.layer_connection(
        Origin("wire", flow=1, capture="t.pcapng"), port=port, layer="wire", on_finding=seen.append
    )
    at = {"c2s": 0, "s2c": 0}
    for direction, data in pieces:
        conn.feed(direction, at[direction], data)
        at[direction] += len(data)
    conn.close()
    return sorted((f["identifier"], f["chain"], f["direction"], f["offset"]) for f in seen)


@pytest.mark.parametrize("cut", [1, 5, 12, 23])
def test_a_stream_claimed_only_after_its_first_bytes_still_gets_its_decoder(cut):
    # the HTTP/2 preface split after `cut` bytes: the first piece is too short for the heuristic
    # (WAIT), so the stack must be made then and decide when the rest comes
    (d0, c2s), s2c = _h2_pieces()
    pieces = [("c2s", c2s[:cut]), ("c2s", c2s[cut:]), s2c]
    assert REGISTRY.choose(c2s[:cut], b"", port=40000) is WAIT
    assert Connection.claims("c2s", c2s[:cut], port=40000)
    got = _consume(WireCheck(IDS, engine="python", hash_budget=0), pieces, port=40000)
    layered = sorted((f["identifier"], f["chain"], f["direction"], f["offset"]) for f in got if f["chain"] != "tcp")
    assert layered == _direct(WireCheck(IDS, engine="python", hash_budget=0), pieces, port=40000)
    assert {c for _i, c, _d, _o in layered} == {"h2-header", "h2-data>gzip"}


def test_a_stream_no_decoder_claims_is_dropped_as_the_stack_would_drop_it():
    rnd = random.Random(4)
    body = rnd.randbytes(300) + IMEI.encode() + rnd.randbytes(50)
    assert not Connection.claims("s2c", body, port=443)
    # the stack itself, made and fed the same bytes, gives up on them at once
    conn = WireCheck(IDS, engine="python", hash_budget=0).layer_connection(
        Origin("wire", flow=1), port=443, scan_bottom=False
    )
    conn.feed("s2c", 0, body)
    assert conn.opaque
    got = _consume(WireCheck(IDS, engine="python", hash_budget=0), [("s2c", body), ("c2s", b"x" * 10)], port=443)
    assert [(f["chain"], f["direction"], f["offset"]) for f in got] == [("tcp", "s2c", 300)]
    # a port a decoder claims makes the stack even for the same bytes
    assert Connection.claims("s2c", body, port=5222)
    assert Connection.claims("c2s", b"", port=443)  # nothing to decide on yet


def test_a_stream_claimed_by_a_layer_that_decodes_nothing_needs_no_stack():
    # TLS without keys: the tls layer claims it and decodes nothing, so the stack made for it
    # would be dropped at once, with no note and no finding
    hello = b"\x16\x03\x01\x00\x40" + bytes(64) + IMEI.encode()
    assert not Connection.claims("c2s", hello, port=443)
    wc = WireCheck(IDS, engine="python", hash_budget=0)
    conn = wc.layer_connection(Origin("wire", flow=1), port=443, scan_bottom=False)
    conn.feed("c2s", 0, hello)
    assert conn.opaque
    conn.close()
    assert wc.findings == [] and not wc.layer_notes.counts
    # (the wire itself is still scanned)
    got = _consume(WireCheck(IDS, engine="python", hash_budget=0), [("c2s", hello)], port=443)
    assert [(f["chain"], f["offset"]) for f in got] == [("tcp", 69)]
    # a stack that did not see the first bytes: what it is claimed by decides
    assert Connection.claims("c2s", b"\x16", port=443)  # WAIT: not yet known


@pytest.mark.parametrize("engine", ENGINES)
def test_a_direction_joined_mid_stream_keeps_stream_offsets_and_its_time(engine):
    wc = WireCheck(IDS, engine=engine, hash_budget=0)
    rnd = random.Random(5)
    c2s = rnd.randbytes(100) + IMEI.encode() + rnd.randbytes(20)
    got = _consume(wc, [("c2s", c2s)], port=443, offsets={"c2s": 7000, "s2c": 0})
    assert [(f["direction"], f["offset"], f["ts"]) for f in got] == [("c2s", 7100, 1.0)]
    # a big first piece is scanned at once (no batch): same offsets
    wc = WireCheck(IDS, engine=engine, hash_budget=0)
    big = rnd.randbytes(5000) + NUMBER.encode()
    got = _consume(wc, [("s2c", big)], port=443, offsets={"c2s": 0, "s2c": 123})
    assert [(f["identifier"], f["offset"]) for f in got] == [("hs1 number0", 5123)]


@pytest.mark.parametrize("engine", ENGINES)
def test_finds_any_is_false_exactly_when_a_stream_finds_nothing(engine):
    pats = patterns_for(IDS)
    scanner = Scanner(pats, engine=engine)
    rnd = random.Random(6)
    for k in range(300):
        data = rnd.randbytes(rnd.randint(0, 3000))
        if k % 3 == 0:
            p = rnd.choice(pats)
            at = rnd.randint(0, len(data))
            data = data[:at] + p.data + data[at:]
        with scanner.stream() as s:
            found = s.feed(data) + s.close()
        assert scanner.finds_any(data) == bool(found), k
        cut = rnd.randint(0, len(data))
        assert scanner.finds_any(data[:cut], bytearray(data[cut:])) == bool(found), k
    # pieces are read one after the other: a pattern across two of them counts
    d = pats[0].data
    assert scanner.finds_any(d[:3], d[3:])
    assert not scanner.finds_any(b"", b"")


def test_registry_remembered_verdicts_and_the_among_shortcut_agree_with_a_fresh_look():
    (_, c2s), (_, s2c) = _h2_pieces()
    heads = [
        c2s,
        c2s[:5],
        s2c,
        b"\x16\x03\x01\x02\x00" + bytes(50),
        b"\x16\x03",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"<?xml version='1.0'?><stream:stream>",
        b"<",
        b"x\x9c" + bytes(20),
        b"\x1f\x8b\x08",
        b"ab",
        random.Random(7).randbytes(600),
        b"\r\nPOST /x HTTP/1.1\r\n",
    ]
    among = frozenset({"tls", "http1", "http2"})
    for head in heads:
        for a, b in ((head, b""), (b"", head), (head, head[:3])):
            for final in (False, True):
                for port in (None, 80, 443, 5222):
                    # a fresh copy each time: nothing remembered applies to it
                    want = REGISTRY.choose(bytes(a), bytes(b), port=port, final=final)
                    assert REGISTRY.choose(a, b, port=port, final=final) is want, (head, port, final)
                    assert REGISTRY.choose(a, b, port=port, final=final) is want  # remembered now
            name = REGISTRY.name_of(bytes(a), bytes(b), final=True)
            short = REGISTRY.name_of(a, b, final=True, among=among)
            assert short == (name if name in among else None), (head, name, short)
    # a mutable head is never remembered: changed, it is looked at again
    buf = bytearray(b"<")
    assert REGISTRY.choose(buf, b"", final=False) is WAIT
    buf[:] = b"\x16\x03\x01\x00\x10"
    assert REGISTRY.choose(buf, b"", final=False) is REGISTRY.choose(bytes(buf), b"", final=False) is not WAIT
    assert len(b"x" * SNIFF_BYTES) == SNIFF_BYTES


def test_flows_past_the_record_cap_are_counted_and_still_correlate_agent_events(tmp_path, monkeypatch):
    from hostctl.events import Endpoint, EventWriter, Payload, SslData

    monkeypatch.setattr(check_mod, "_MAX_FLOW_RECORDS", 2)
    cap = tmp_path / "c.pcapng"
    rnd = random.Random(8)
    with cap.open("wb") as f:
        w = PcapngWriter(f)
        for i in range(5):
            conv = TcpConversation(w.packet, client=("10.0.0.2", 41000 + i), server=("10.9.0.1", 443))
            conv.open(10.0 + i)
            conv.send(10.1 + i, "c2s", rnd.randbytes(200))
            conv.send(10.2 + i, "s2c", rnd.randbytes(200) + (IMEI.encode() if i == 3 else b""))
            conv.close(10.3 + i)
        w.flush()
    ev = tmp_path / "events.jsonl"
    with EventWriter(ev) as w:
        w.write(
            SslData(
                app="com.android.mms",
                pid=7,
                host_ts=20.0,
                agent_ts=20.0,
                seq=1,
                fn="SSL_write",
                direction="out",
                module="libssl.so",
                ssl="0x1",
                fd=5,
                local=Endpoint("10.0.0.2", 41004),
                peer=Endpoint("10.9.0.1", 443),
                length=len(NUMBER),
                data=Payload(NUMBER.encode(), len(NUMBER)),
            )
        )
    wc = WireCheck(IDS, engine="python", hash_budget=0)
    wc.add_capture(cap)
    wc.add_agent_events(ev)
    rep = wc.report()
    # two records under the cap, and the flow with a finding past it; two without are counted
    assert [fl["id"] for fl in rep["flows"]] == [1, 2, 4]
    assert rep["flows_omitted"] == 2 and rep["summary"]["flows"] == 5
    agent = [f for f in rep["findings"] if f["source"] == "agent"]
    assert [(f["flow"], f["identifier"]) for f in agent] == [(5, "hs1 number0")]
