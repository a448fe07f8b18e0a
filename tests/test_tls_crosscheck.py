"""The cross-check of the agent's TLS plaintext against the decrypted wire (issue 16.3), on real
Python ``ssl`` sessions captured on lo: the events are what the hooks would have reported for
them (the tls-secret lines of the client's key log, SSL_write/SSL_read per call), then taken away
or altered to show each finding: bytes on the wire only (the hooks' events removed for one
flow), on the hooks' side only, a difference, a flow not decrypted (fail closed). The emulated
lab's end-to-end version (hostctl trace + the wire tap) is in tests/test_trace.py."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tls_capture import have_tools, python_session

from hostctl.events import Endpoint, Payload, SslData, TlsSecret
from hostctl.wire.crosscheck import cross_check
from hostctl.wire.decrypt import decrypt_capture, decrypt_trace_capture, trace_keylog

REQUEST = b"POST /report HTTP/1.1\r\nX-Imei: 356938035643809\r\n\r\n" * 40
RESPONSE = b"HTTP/1.1 200 OK\r\n\r\n" + b"r" * 30000


@pytest.fixture(scope="module")
def sess(tmp_path_factory):
    if not have_tools():
        pytest.skip("needs tcpdump, tshark, openssl and root for lo capture")
    d = tmp_path_factory.mktemp("cc")
    return {
        v: python_session(d, version=v, request=REQUEST, response=RESPONSE, chunks=3, name=f"cc{v}")
        for v in ("1.2", "1.3")
    }


def hook_events(r, *, ssl="0x55d0", pid=100, port=None, chunks=3):
    """What the agent's hooks report for the session: its secrets, then SSL_write per chunk
    sent and SSL_read per chunk received."""
    evs = []
    seq = 0

    def n():
        nonlocal seq
        seq += 1
        return seq

    local = Endpoint("127.0.0.1", port) if port else None
    for line in r["keylog"].read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        label, cr, secret = line.split()
        evs.append(
            TlsSecret(
                app="app",
                pid=pid,
                host_ts=1.0,
                seq=n(),
                label=label,
                client_random=cr,
                secret=secret,
                module="libssl.so.3",
                ssl=ssl,
                fd=5,
                local=local,
            )
        )
    step = max(1, len(REQUEST) // chunks)
    for i in range(0, len(REQUEST), step):
        part = REQUEST[i : i + step]
        evs.append(
            SslData(
                app="app",
                pid=pid,
                host_ts=2.0,
                seq=n(),
                fn="SSL_write_ex",
                direction="out",
                module="libssl.so.3",
                ssl=ssl,
                fd=5,
                local=local,
                length=len(part),
                data=Payload(part, len(part)),
            )
        )
    for i in range(0, len(RESPONSE), 16384):
        part = RESPONSE[i : i + 16384]
        evs.append(
            SslData(
                app="app",
                pid=pid,
                host_ts=3.0,
                seq=n(),
                fn="SSL_read_ex",
                direction="in",
                module="libssl.so.3",
                ssl=ssl,
                fd=5,
                local=local,
                length=len(part),
                data=Payload(part, len(part)),
            )
        )
    return evs


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_agreeing_hooks_and_wire_pass(sess, version):
    r = sess[version]
    flows, _ = decrypt_capture(r["pcap"], [r["keylog"]])
    cc = cross_check(flows, hook_events(r))
    assert cc.passed and cc.counts == {"agree": 1}
    (f,) = cc.flows
    assert f.matched_by == "client-random" and f.tls_status == "decrypted"
    assert [(d.direction, d.matched, d.wire_only, d.agent_only) for d in f.directions] == [
        ("c2s", len(REQUEST), 0, 0),
        ("s2c", len(RESPONSE), 0, 0),
    ]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_hooks_removed_for_the_flow_is_reported_wire_only(sess, version):
    r = sess[version]
    flows, _ = decrypt_capture(r["pcap"], [r["keylog"]])
    events = [e for e in hook_events(r) if not isinstance(e, SslData)]  # the SSL hooks saw nothing
    cc = cross_check(flows, events)
    assert not cc.passed
    (f,) = cc.flows
    assert f.status == "wire-only" and "did not hook" in f.why
    (ev_c2s, ev_s2c) = f.evidence
    assert ev_c2s["direction"] == "c2s" and ev_c2s["length"] == len(REQUEST) and ev_c2s["offset"] == 0
    assert ev_c2s["record"] >= 1 and ev_c2s["record_offset"] == 0 and ev_c2s["wire_offset"] > 0
    assert bytes.fromhex(ev_c2s["sample"]) == REQUEST[:64] and ev_s2c["length"] == len(RESPONSE)


def test_one_call_missed_is_reported_with_its_place(sess):
    r = sess["1.3"]
    flows, _ = decrypt_capture(r["pcap"], [r["keylog"]])
    events = hook_events(r)
    writes = [e for e in events if isinstance(e, SslData) and e.direction == "out"]
    events.remove(writes[-1])  # the last SSL_write went through another stack
    (f,) = cross_check(flows, events).flows
    assert f.status == "wire-only"
    (ev,) = f.evidence
    assert ev["offset"] == len(REQUEST) - writes[-1].length and ev["length"] == writes[-1].length


def test_altered_plaintext_differs_and_extra_plaintext_is_agent_only(sess):
    r = sess["1.2"]
    flows, _ = decrypt_capture(r["pcap"], [r["keylog"]])
    events = hook_events(r)
    i = next(k for k, e in enumerate(events) if isinstance(e, SslData) and e.direction == "out")
    bad = bytearray(events[i].data.data)
    bad[10] ^= 0x20
    events[i] = dataclasses.replace(events[i], data=Payload(bytes(bad), len(bad)))
    (f,) = cross_check(flows, events).flows
    assert f.status == "differ" and f.directions[0].first_difference["offset"] == 10
    events = hook_events(r)
    events.append(
        SslData(
            app="app",
            pid=100,
            host_ts=4.0,
            seq=999,
            fn="SSL_write_ex",
            direction="out",
            module="libssl.so.3",
            ssl="0x55d0",
            fd=5,
            length=5,
            data=Payload(b"extra", 5),
        )
    )
    (f,) = cross_check(flows, events).flows
    assert f.status == "agent-only" and f.directions[0].agent_only == 5


def test_truncated_agent_capture_counts_length_not_a_difference(sess):
    r = sess["1.3"]
    flows, _ = decrypt_capture(r["pcap"], [r["keylog"]])
    events = [
        dataclasses.replace(e, data=Payload(e.data.data[:100], e.data.length)) if isinstance(e, SslData) else e
        for e in hook_events(r)
    ]
    cc = cross_check(flows, events)
    assert cc.passed and cc.flows[0].directions[1].uncaptured > 0


def test_flow_not_decrypted_fails_closed_and_unmatched_session_is_reported(sess, tmp_path):
    r12, r13 = sess["1.2"], sess["1.3"]
    flows, _ = decrypt_capture(r12["pcap"], [r13["keylog"]])  # the wrong session's secrets
    cc = cross_check(flows, hook_events(r13))
    assert not cc.passed
    (f,) = cc.flows
    assert f.status == "not-decrypted" and "no-secret" in f.why
    assert [s["client_random"] for s in cc.agent_only_sessions] == [r13["keylog"].read_text().split()[-2]]


def test_local_port_fallback_and_trace_dir_secrets(sess, tmp_path):
    r = sess["1.3"]
    # a trace directory with the secrets only as events (no sslkeylog.txt): decrypt_trace_capture
    from hostctl.events import EventWriter

    with EventWriter(tmp_path / "events.jsonl") as w:
        for e in hook_events(r):
            if isinstance(e, TlsSecret):
                w.write(e)
    assert len(trace_keylog(tmp_path)) == 5
    flows, rep = decrypt_trace_capture(r["pcap"], tmp_path)
    assert rep["flows"] == {"decrypted": 1}
    port = flows[0].key.client[1]
    no_secrets = [e for e in hook_events(r, port=port) if isinstance(e, SslData)]
    (f,) = cross_check(flows, no_secrets).flows
    assert f.status == "agree" and f.matched_by == "local-port"
    assert cross_check(flows, no_secrets, window=(0.0, 1.0)).flows == ()
