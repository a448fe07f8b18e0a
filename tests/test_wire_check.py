"""wire-check end to end on captures the tests build: every form of every identifier planted in
TCP streams split across segments, retransmitted and out of order, and in UDP; found exactly once
per occurrence with its flow, direction and offset; nothing found in random data; verdicts."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.wire.check import WireCheck, form_class, wire_check
from hostctl.wire.identifiers import Identifier, patterns_for
from hostctl.wire.pcapwrite import LINKTYPE_ETHERNET, PcapngWriter, TcpConversation, frame, ipv4_udp

IDENTS = [
    Identifier("imei", "867246020361859", "hs1 imei0"),
    Identifier("imsi", "460001234567890", "hs1 imsi0"),
    Identifier("iccid", "89860012345678901238", "hs1 iccid0"),
    Identifier("msisdn", "+8613812345678", "hs1 number0"),
    Identifier("text", "hostctl marker 7f3a: see you at nine", "text"),
]


def _build(path, streams, *, mss=7, seed=1, udp=()):
    """Write one TCP conversation per (client_port, c2s bytes, s2c bytes), segments of ``mss``
    bytes with some adjacent data segments swapped and some sent twice; then UDP datagrams."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        w.add_names({"198.18.0.1": "api.account.xiaomi.com"})
        ts = 1_700_000_000.0
        for port, c2s, s2c in streams:
            pkts: list[tuple[float, bytes]] = []
            conv = TcpConversation(
                lambda t, b, out=pkts: out.append((t, b)),
                client=("10.64.0.2", port),
                server=("198.18.0.1", 80),
                mss=mss,
            )
            conv.open(ts)
            conv.send(ts + 0.01, "c2s", c2s)
            conv.send(ts + 0.02, "s2c", s2c)
            conv.close(ts + 0.03)
            body = pkts[3:-3]
            for i in range(0, len(body) - 1, 5):  # out of order
                if rng.random() < 0.5:
                    body[i], body[i + 1] = body[i + 1], body[i]
            out = pkts[:3]
            for p in body:
                out.append(p)
                if rng.random() < 0.1:  # retransmitted
                    out.append(p)
            out += pkts[-3:]
            for t, b in out:
                w.packet(t, b)
            ts += 1
        for i, payload in enumerate(udp):
            w.packet(ts + i, frame(LINKTYPE_ETHERNET, ipv4_udp("10.64.0.2", 40000 + i, "198.18.0.1", 53, payload)))
        w.flush()


def _plant(patterns, rng):
    """Random filler with each pattern's bytes once; returns (stream, [(offset, pattern)]). The
    filler has no NUL: a NUL after UTF-16BE text makes it also UTF-16LE one byte later, an equally
    long reading the overlap rule would rightly prefer."""
    out = bytearray()
    where = []
    for p in patterns:
        out += bytes(rng.randint(1, 255) for _ in range(rng.randint(9, 20)))
        where.append((len(out), p))
        out += p.data
    out += os.urandom(16)
    return bytes(out), where


@pytest.mark.parametrize("engine", ["hyperscan", "python"])
def test_every_form_found_exactly_once_across_segments_reordering_and_retransmits(tmp_path, engine):
    pats = patterns_for(IDENTS)
    assert len(pats) >= 128
    rng = random.Random(5)
    half = len(pats) // 2
    c2s, where_c = _plant(pats[:half], rng)
    s2c, where_s = _plant(pats[half:], rng)
    cap = tmp_path / "planted.pcapng"
    _build(cap, [(41000, c2s, s2c)])
    report = wire_check([cap], IDENTS, engine=engine, hash_budget=0)
    found = {(f["direction"], f["offset"]): f for f in report["findings"]}
    assert len(found) == len(report["findings"]), "two findings at one place"
    expected = {("c2s", off): p for off, p in where_c} | {("s2c", off): p for off, p in where_s}
    missing = [(k, p.form) for k, p in expected.items() if k not in found]
    assert not missing, missing[:10]
    extra = [(k, f["form"]) for k, f in found.items() if k not in expected]
    assert not extra, extra[:10]
    for k, p in expected.items():
        f = found[k]
        assert f["form"] in p.forms and f["identifier"] == p.ident.label and f["flow"] == 1
        assert f["length"] == len(p.data) and f["verdict"] == form_class(f["form"])
    flow = report["flows"][0]
    assert flow["bytes"] == {"c2s": len(c2s), "s2c": len(s2c)} and flow["gaps"] == 0


def test_udp_datagrams_and_multiple_occurrences(tmp_path):
    imei = IDENTS[0].value.encode()
    cap = tmp_path / "udp.pcapng"
    stream = b"x" * 30 + imei + b"y" * 40 + imei + b"z" * 10
    _build(cap, [(41001, stream, b"ok")], udp=[b"imei=" + imei, os.urandom(200)])
    report = wire_check([cap], IDENTS, hash_budget=0)
    tcp = [f for f in report["findings"] if f["flow"] == 1]
    assert [f["offset"] for f in tcp] == [30, 30 + len(imei) + 40]
    udp = [f for f in report["findings"] if f["flow"] != 1]
    assert len(udp) == 1 and udp[0]["offset"] == 5 and udp[0]["form"] == "ascii"
    ident = {i["identifier"]: i for i in report["identifiers"]}
    assert ident["hs1 imei0"]["verdict"] == "in-clear" and ident["hs1 imei0"]["findings"] == 3
    assert ident["hs1 imsi0"]["verdict"] == "absent"


def test_random_data_has_no_finding(tmp_path):
    rng = random.Random(9)
    cap = tmp_path / "random.pcapng"
    _build(
        cap,
        [(41000 + i, rng.randbytes(20000), rng.randbytes(5000)) for i in range(3)],
        mss=1460,
        udp=[rng.randbytes(900) for _ in range(20)],
    )
    report = wire_check([cap], IDENTS, hash_budget=0)
    assert report["findings"] == []
    assert all(i["verdict"] == "absent" for i in report["identifiers"])
    assert report["summary"]["flows"] == 3 + 20


def test_hashed_number_is_recovered_and_encoded_is_encoded(tmp_path):
    number = IDENTS[3].value
    digest = hashlib.sha1(number.lstrip("+").encode()).hexdigest().encode()
    body = (
        b"GET /gslb/?h=" + digest + b"&i=" + base64.b64encode(IDENTS[1].value.encode()) + b" HTTP/1.1\r\n"
        b"Host: resolver.msg.xiaomi.net\r\n\r\n"
    )
    cap = tmp_path / "hashed.pcapng"
    _build(cap, [(41002, body, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")], mss=1460)
    report = wire_check([cap], IDENTS, hash_budget=5)
    ident = {i["identifier"]: i for i in report["identifiers"]}
    assert ident["hs1 number0"]["verdict"] == "hashed"
    assert ident["hs1 imsi0"]["verdict"] == "encoded"
    [h] = report["hashed"]
    assert h["identifier"] == "hs1 number0" and h["recovered"] in (number, number.lstrip("+"))
    assert h["space_size"] > 10**8 and h["searched"] >= 1
    [clear] = report["clear_http"]
    assert clear["host"] == "resolver.msg.xiaomi.net" and clear["findings"] == 2


def test_repeated_opaque_value_is_deterministic(tmp_path):
    token = base64.b64encode(os.urandom(32)).decode()
    other = base64.b64encode(os.urandom(32)).decode()
    a = f'POST /mx HTTP/1.1\r\nHost: api.account.xiaomi.com\r\nContent-Length: 60\r\n\r\n{{"pid":"{token}"}}'.encode()
    b = f'POST /mx HTTP/1.1\r\nHost: api.account.xiaomi.com\r\nContent-Length: 60\r\n\r\n{{"pid":"{token}","n":"{other}"}}'.encode()
    cap = tmp_path / "det.pcapng"
    _build(cap, [(41003, a, b"HTTP/1.1 200 OK\r\n\r\n"), (41004, b, b"HTTP/1.1 200 OK\r\n\r\n")], mss=1460)
    report = wire_check([cap], IDENTS, hash_budget=0)
    [d] = report["deterministic"]
    assert d["value"] == token and d["sessions"] == 2 and d["fields"] == ["pid"] and d["identifier"] is None


def test_cli_json_exit_codes_and_redaction(tmp_path):
    cap = tmp_path / "c.pcapng"
    _build(cap, [(41005, b"imei=" + IDENTS[0].value.encode(), b"")], mss=1460)
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, vars=dict(os.environ))
    st = main(["wire-check", str(cap), "--imei", IDENTS[0].value, "--json", "--redact"], env)
    assert st == ExitStatus.CHECK_FAILED
    assert IDENTS[0].value not in out.getvalue()
    doc = json.loads(out.getvalue())
    assert doc["findings"][0]["offset"] == 5 and doc["findings"][0]["form"] == "ascii"
    out.truncate(0), out.seek(0)
    assert main(["wire-check", str(cap), "--imsi", IDENTS[1].value], env) == ExitStatus.OK
    assert "absent" in out.getvalue()
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    assert main(["wire-check", str(bad), "--imsi", IDENTS[1].value], env) == ExitStatus.ERROR
    assert "bad.pcap" in err.getvalue()
    assert main(["wire-check", str(cap)], env) == ExitStatus.USAGE


def test_scanner_engines_agree_on_a_capture(tmp_path):
    rng = random.Random(3)
    pats = patterns_for(IDENTS)
    data, _ = _plant(rng.sample(pats, 60), rng)
    cap = tmp_path / "agree.pcapng"
    _build(cap, [(41006, data, data[::-1])], mss=13)
    a = WireCheck(IDENTS, engine="hyperscan", hash_budget=0)
    a.add_capture(cap)
    b = WireCheck(IDENTS, engine="python", hash_budget=0)
    b.add_capture(cap)
    key = lambda f: (f["flow"], f["direction"], f["offset"], f["form"])  # noqa: E731
    assert sorted(map(key, a.report()["findings"])) == sorted(map(key, b.report()["findings"]))
