"""TLS decryption against real sessions: ``openssl s_server``/``s_client`` and Python ``ssl`` on
loopback, captured with tcpdump, the key log written by the client. Our decrypted bytes must equal
the bytes sent and tshark's (``-o tls.keylog_file:F -z follow,tls,raw``); a wrong key, a missing
key, a cut record, a capture that starts mid-session are each reported per flow, never a crash;
``--write-decrypted`` output opens decrypted in tshark with no key file.

Key schedule vectors: RFC 8448 section 3 (server handshake key and IV from its traffic secret) and
the TLS 1.2 PRF vector circulated on the IETF TLS list (SHA-256, "test label"), which tlslite-ng's
and Go's crypto/tls tests also use.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tls_capture import have_tools, openssl_session, python_session, tshark_follow

from hostctl.cli import Environment, ExitStatus, main
from hostctl.wire.check import wire_check
from hostctl.wire.decrypt import capture_keylog, decrypt_capture
from hostctl.wire.flows import FlowTable
from hostctl.wire.identifiers import Identifier
from hostctl.wire.keylog import KeyLog
from hostctl.wire.pcapread import open_capture
from hostctl.wire.tlsdecrypt import hkdf_expand_label, tls12_prf

needs_tools = pytest.mark.skipif(not have_tools(), reason="needs tcpdump, tshark, openssl and root for lo capture")

IMEI = "356938035643809"
REQUEST = b"GET / HTTP/1.0\r\nX-Imei: " + IMEI.encode() + b"\r\n\r\n"

SUITES = [
    ("1.3", "TLS_AES_128_GCM_SHA256", ()),
    ("1.3", "TLS_AES_256_GCM_SHA384", ()),
    ("1.3", "TLS_CHACHA20_POLY1305_SHA256", ()),
    ("1.3", "TLS_AES_128_CCM_SHA256", ()),
    ("1.2", "ECDHE-RSA-AES128-GCM-SHA256", ()),
    ("1.2", "ECDHE-RSA-AES256-GCM-SHA384", ()),
    ("1.2", "ECDHE-RSA-CHACHA20-POLY1305", ()),
    ("1.2", "ECDHE-RSA-AES128-SHA", ()),  # encrypt-then-MAC (OpenSSL's default)
    ("1.2", "ECDHE-RSA-AES256-SHA", ("-no_etm",)),  # MAC-then-encrypt
    ("1.2", "ECDHE-RSA-AES128-SHA256", ("-no_etm",)),
    ("1.2", "ECDHE-RSA-AES256-SHA384", ()),
    ("1.2", "AES128-SHA256", ()),  # RSA key exchange
]


# -- key schedule vectors ------------------------------------------------------------------------


def test_hkdf_expand_label_rfc8448():
    secret = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
    assert hkdf_expand_label(secret, "key", b"", 16).hex() == "3fce516009c21727d0f2e4e86ee403bc"
    assert hkdf_expand_label(secret, "iv", b"", 12).hex() == "5d313eb2671276ee13000b30"


def test_tls12_prf_vector():
    out = tls12_prf(
        bytes.fromhex("9bbe436ba940f017b17652849a71db35"),
        b"test label",
        bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c"),
        100,
    )
    assert out.hex().startswith("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a")
    assert out.hex().endswith("a5110fff70187347b66")


# -- key log parsing -----------------------------------------------------------------------------


def test_keylog_parsing_counts_bad_and_unsupported(tmp_path):
    cr = "11" * 32
    text = (
        f"# comment\n\nCLIENT_RANDOM {cr} {'22' * 48}\n"
        f"CLIENT_TRAFFIC_SECRET_0 {cr} {'33' * 32}\n"
        f"RSA {'44' * 8} {'55' * 48}\n"
        f"CLIENT_RANDOM {cr[:10]} {'22' * 48}\n"
        f"CLIENT_RANDOM {cr} zz\n"
        f"CLIENT_RANDOM {cr} {'66' * 48}\n"  # conflicts with the first
        "garbage\n"
    )
    p = tmp_path / "k.log"
    p.write_text(text)
    kl = KeyLog.from_files([p])
    assert kl.get(bytes.fromhex(cr)) == {
        "CLIENT_RANDOM": bytes.fromhex("22" * 48),
        "CLIENT_TRAFFIC_SECRET_0": bytes.fromhex("33" * 32),
    }
    s = kl.summary()
    assert s["bad_lines"] == 3 and s["unsupported"] == {"RSA": 1} and s["conflicts"] == 1
    assert s["bad_examples"][0].startswith(f"{p}:6:")
    assert kl.text().splitlines() == [f"CLIENT_RANDOM {cr} {'22' * 48}", f"CLIENT_TRAFFIC_SECRET_0 {cr} {'33' * 32}"]


# -- real sessions -------------------------------------------------------------------------------


@needs_tools
@pytest.mark.parametrize("version,cipher,extra", SUITES, ids=[f"{v}-{c}{'-'.join(x)}" for v, c, x in SUITES])
def test_openssl_session_equals_sent_and_tshark(tmp_path, version, cipher, extra):
    r = openssl_session(tmp_path, version=version, cipher=cipher, request=REQUEST, extra_client=extra)
    flows, rep = decrypt_capture(r["pcap"], [r["keylog"]])
    assert len(flows) == 1, rep
    f = flows[0]
    assert f.summary["status"] == "decrypted", f.summary
    assert f.summary["version"] == f"TLS {version}"
    assert bytes(f.data["c2s"]) == REQUEST
    assert bytes(f.data["s2c"]) == r["received"]
    ts = tshark_follow(r["pcap"], r["keylog"])
    assert ts["c2s"] == REQUEST and ts["s2c"] == bytes(f.data["s2c"])


def _tcp_streams(pcap):
    """The reassembled TCP payload of each flow direction (no TLS)."""
    streams: dict = {}

    class C:
        def flow_start(self, flow):
            pass

        def data(self, flow, d, offset, data, ts):
            streams.setdefault((flow.id, d), bytearray()).extend(data)

        def gap(self, *a):
            pass

        def datagram(self, *a):
            pass

        def flow_end(self, flow):
            pass

    FlowTable(C(), identify=False).run(open_capture(pcap))
    return streams


@needs_tools
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_python_ssl_large_transfer_across_segments(tmp_path, version):
    # 300 kB each way: many records, each split over TCP segments and records straddling them
    request = bytes(range(256)) * 1200
    response = IMEI.encode() * 20000
    r = python_session(tmp_path, version=version, request=request, response=response, chunks=7)
    assert r["server_got"] == request and r["received"] == response
    flows, _ = decrypt_capture(r["pcap"], [r["keylog"]])
    f = flows[0]
    assert f.summary["status"] == "decrypted"
    assert bytes(f.data["c2s"]) == request and bytes(f.data["s2c"]) == response
    ts = tshark_follow(r["pcap"], r["keylog"])
    assert ts["c2s"] == request and ts["s2c"] == response
    # every record located points back at a TLS application_data record on the wire
    wire = _tcp_streams(r["pcap"])[(1, "c2s")]
    for off in (0, 12345, len(request) - 1):
        loc = f.locate("c2s", off)
        hdr = loc["wire_offset"] - loc["record_offset"] - 5 - (8 if version == "1.2" else 0)
        assert wire[hdr] == 0x17 and wire[hdr + 1] == 3


@needs_tools
def test_wire_check_finds_identifier_in_decrypted_tls_with_record_and_wire_offset(tmp_path):
    r = openssl_session(tmp_path, version="1.3", cipher="TLS_AES_128_GCM_SHA256", request=REQUEST)
    without = wire_check([r["pcap"]], [Identifier("imei", IMEI, "imei")], hash_budget=0)
    assert without["summary"]["findings"] == 0 and not without["tls"]["flows"]
    rep = wire_check([r["pcap"]], [Identifier("imei", IMEI, "imei")], keylogs=[r["keylog"]], hash_budget=0)
    assert rep["tls"]["flows"] == {"decrypted": 1}
    [f] = [f for f in rep["findings"] if f["direction"] == "c2s"]
    assert f["layer"] == "tls-decrypted" and f["verdict"] == "in-clear" and f["flow"] == 1
    assert f["offset"] == REQUEST.index(IMEI.encode()) and f["record_offset"] == f["offset"]
    wire = _tcp_streams(r["pcap"])[(1, "c2s")]
    rec_start = f["wire_offset"] - f["record_offset"] - 5
    assert wire[rec_start : rec_start + 3] == b"\x17\x03\x03"
    # the record number counts every record of the direction: walk them to the one cited
    p, n = 0, 0
    while p < rec_start:
        p += 5 + int.from_bytes(wire[p + 3 : p + 5], "big")
        n += 1
    assert p == rec_start and f["record"] == n + 1
    assert rep["identifiers"][0]["verdict"] == "in-clear"
    assert rep["flows"][0]["tls_decryption"]["status"] == "decrypted"


@needs_tools
def test_key_update_both_directions(tmp_path):
    # s_client's "K" command line sends a KeyUpdate asking the peer to update too (RFC 8446 4.6.3)
    import socket
    import ssl
    import threading

    from tls_capture import TIMEOUT, free_port, make_cert, tcpdump

    cert, key = make_cert(tmp_path)
    port = free_port()
    pcap, keylog = tmp_path / "ku.pcap", tmp_path / "ku.keylog"
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.minimum_version = ssl.TLSVersion.TLSv1_3
    lsock = socket.create_server(("127.0.0.1", port))
    lsock.settimeout(TIMEOUT)
    got = bytearray()

    def serve():
        conn, _ = lsock.accept()
        with sctx.wrap_socket(conn, server_side=True) as s:
            s.settimeout(TIMEOUT)
            while b"END" not in got:
                b = s.recv(4096)
                if not b:
                    return
                got.extend(b)
                s.sendall(b"ack " + b)
            s.sendall(b"bye\n")

    with tcpdump(pcap, port):
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        client = subprocess.Popen(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-keylogfile",
                str(keylog),
                "-tls1_3",
                "-no_ign_eof",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            lines = [b"one\n", b"K\n", b"two\n", b"K\n", b"three END\n"]
            for line in lines:
                client.stdin.write(line)
                client.stdin.flush()
                t.join(0.3)
            t.join(TIMEOUT)
            client.stdin.close()
            client.wait(TIMEOUT)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(TIMEOUT)
    lsock.close()
    assert bytes(got) == b"one\ntwo\nthree END\n"
    flows, _ = decrypt_capture(pcap, [keylog])
    f = flows[0]
    assert f.summary["status"] == "decrypted", f.summary
    assert f.summary["c2s"]["key_updates"] == 2 and f.summary["s2c"]["key_updates"] == 2
    assert bytes(f.data["c2s"]) == b"one\ntwo\nthree END\n"
    assert bytes(f.data["s2c"]).endswith(b"bye\n") and b"ack three END" in bytes(f.data["s2c"])
    ts = tshark_follow(pcap, keylog)
    assert ts["c2s"] == bytes(f.data["c2s"]) and ts["s2c"] == bytes(f.data["s2c"])


# -- failures, per flow, never a crash ---------------------------------------------------------


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    if not have_tools():
        pytest.skip("needs tcpdump, tshark, openssl and root for lo capture")
    d = tmp_path_factory.mktemp("tls")
    return {
        "13": python_session(d, version="1.3", request=REQUEST * 50, response=b"x" * 100000, name="a13"),
        "12": python_session(
            d,
            version="1.2",
            request=REQUEST * 50,
            response=b"y" * 100000,
            name="a12",
            cipher="ECDHE-RSA-AES128-GCM-SHA256",
        ),
    }


def _flip_secrets(src: Path, dst: Path) -> None:
    out = []
    for line in src.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            s = bytearray(bytes.fromhex(parts[2]))
            s[0] ^= 1
            parts[2] = s.hex()
        out.append(" ".join(parts))
    dst.write_text("\n".join(out) + "\n")


@pytest.mark.parametrize("which", ["12", "13"])
def test_wrong_secret_reported(sessions, tmp_path, which):
    r = sessions[which]
    bad = tmp_path / "bad.keylog"
    _flip_secrets(r["keylog"], bad)
    flows, rep = decrypt_capture(r["pcap"], [bad])
    assert flows[0].summary["status"] == "wrong-secret" and rep["flows"] == {"wrong-secret": 1}
    assert not flows[0].data["c2s"] and not flows[0].data["s2c"]


@pytest.mark.parametrize("which", ["12", "13"])
def test_missing_secret_reported(sessions, which):
    other = sessions["13" if which == "12" else "12"]
    flows, rep = decrypt_capture(sessions[which]["pcap"], [other["keylog"]])
    assert flows[0].summary["status"] == "no-secret" and rep["flows"] == {"no-secret": 1}


def test_only_application_secrets_tls13(sessions, tmp_path):
    # a key log without the handshake secrets (some extractors only give *_TRAFFIC_SECRET_0)
    r = sessions["13"]
    kl = tmp_path / "app.keylog"
    kl.write_text("".join(line + "\n" for line in r["keylog"].read_text().splitlines() if "_TRAFFIC_SECRET_0" in line))
    flows, _ = decrypt_capture(r["pcap"], [kl])
    assert flows[0].summary["status"] == "decrypted"
    assert bytes(flows[0].data["c2s"]) == REQUEST * 50 and bytes(flows[0].data["s2c"]) == b"x" * 100000


def _rewrite(src: Path, dst: Path, keep) -> None:
    """Copies a capture as classic pcap; ``keep(i, frame) -> frame or None`` (frames may be cut)."""
    with open(dst, "wb") as f:
        r = open_capture(src)
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, pkt in enumerate(r):
            out = keep(i, pkt)
            if out is None:
                continue
            data, origlen = out if isinstance(out, tuple) else (out, len(out))
            sec = int(pkt.ts)
            f.write(struct.pack("<IIII", sec, round((pkt.ts - sec) * 1e6), len(data), origlen) + data)
        r.close()


def _data_packets(pcap: Path) -> list[int]:
    """Indices of packets carrying TCP payload (Ethernet/IPv4, as tcpdump on lo writes)."""
    out = []
    for i, pkt in enumerate(open_capture(pcap)):
        ihl = (pkt.data[14] & 15) * 4
        total = int.from_bytes(pkt.data[16:18], "big")
        doff = (pkt.data[14 + ihl + 12] >> 4) * 4
        if total - ihl - doff > 0:
            out.append(i)
    return out


@pytest.mark.parametrize("which", ["12", "13"])
def test_truncated_record_reported(sessions, tmp_path, which):
    r = sessions[which]
    last = _data_packets(r["pcap"])[-3]
    cut = tmp_path / "cut.pcap"
    # the capture ends inside a record: the packet is cut short (snaplen) and nothing follows
    _rewrite(
        r["pcap"],
        cut,
        lambda i, p: None if i > last else (p.data[: len(p.data) - 40], len(p.data)) if i == last else p.data,
    )
    flows, rep = decrypt_capture(cut, [r["keylog"]])
    assert flows[0].summary["status"] == "truncated", flows[0].summary
    assert flows[0].data["c2s"] or flows[0].data["s2c"]  # what came before is decrypted


@pytest.mark.parametrize("which", ["12", "13"])
def test_missing_segment_mid_stream(sessions, tmp_path, which):
    r = sessions[which]
    data = _data_packets(r["pcap"])
    drop = data[len(data) // 2]
    holed = tmp_path / "hole.pcap"
    _rewrite(r["pcap"], holed, lambda i, p: None if i == drop else p.data)
    flows, _ = decrypt_capture(holed, [r["keylog"]])
    s = flows[0].summary
    assert s["status"] == "truncated"
    assert "missing" in (s["c2s"].get("detail", "") + s["s2c"].get("detail", ""))


@pytest.mark.parametrize("which", ["12", "13"])
def test_capture_starting_mid_session(sessions, tmp_path, which):
    r = sessions[which]
    data = _data_packets(r["pcap"])
    start = data[6]  # well after both hellos
    mid = tmp_path / "mid.pcap"
    _rewrite(r["pcap"], mid, lambda i, p: p.data if i >= start else None)
    flows, rep = decrypt_capture(mid, [r["keylog"]])
    assert [f.summary["status"] for f in flows] == ["no-handshake"]
    rep2 = wire_check([mid], [Identifier("imei", IMEI, "imei")], keylogs=[r["keylog"]], hash_budget=0)
    assert rep2["tls"]["flows"] == {"no-handshake": 1}


def test_garbage_after_handshake_no_crash(sessions, tmp_path):
    r = sessions["13"]
    data = _data_packets(r["pcap"])
    target = data[5]
    mangled = tmp_path / "garbage.pcap"

    def keep(i, p):
        if i != target:
            return p.data
        b = bytearray(p.data)
        ihl = (b[14] & 15) * 4
        doff = (b[14 + ihl + 12] >> 4) * 4
        start = 14 + ihl + doff
        b[start:] = os.urandom(len(b) - start)
        return bytes(b)

    _rewrite(r["pcap"], mangled, keep)
    flows, rep = decrypt_capture(mangled, [r["keylog"]])
    assert flows[0].summary["status"] in ("truncated", "wrong-secret")


# -- DSBs ----------------------------------------------------------------------------------------


@needs_tools
def test_write_decrypted_opens_in_tshark_without_key_file(sessions, tmp_path):
    r = sessions["13"]
    out_pcap = tmp_path / "dec.pcapng"
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, vars=dict(os.environ))
    st = main(
        [
            "wire-check",
            str(r["pcap"]),
            "--imei",
            IMEI,
            "--keylog",
            str(r["keylog"]),
            "--write-decrypted",
            str(out_pcap),
            "--json",
        ],
        env,
    )
    assert st == ExitStatus.CHECK_FAILED, err.getvalue()
    rep = json.loads(out.getvalue())
    assert rep["written"]["secrets"] == 5 and rep["tls"]["flows"] == {"decrypted": 1}
    assert (out_pcap.stat().st_mode & 0o777) == 0o600
    ts = tshark_follow(out_pcap, None)
    assert ts["c2s"] == REQUEST * 50 and ts["s2c"] == b"x" * 100000
    # without the DSB tshark sees no plaintext
    assert tshark_follow(r["pcap"], None)["c2s"] == b""
    # our reader takes the secrets from the DSB too: no --keylog needed
    assert len(capture_keylog(out_pcap)) == 5
    flows, rep2 = decrypt_capture(out_pcap)
    assert bytes(flows[0].data["c2s"]) == REQUEST * 50
    out2 = io.StringIO()
    env2 = Environment(stdout=out2, stderr=io.StringIO(), vars=dict(os.environ))
    assert main(["wire-check", str(out_pcap), "--imei", IMEI], env2) == ExitStatus.CHECK_FAILED
    assert "1 decrypted" in out2.getvalue()


def test_write_decrypted_keeps_only_the_captures_sessions(sessions, tmp_path):
    both = tmp_path / "both.keylog"
    both.write_text(sessions["13"]["keylog"].read_text() + sessions["12"]["keylog"].read_text())
    rep = wire_check(
        [sessions["12"]["pcap"]],
        [Identifier("imei", IMEI, "imei")],
        keylogs=[both],
        write_decrypted=tmp_path / "o.pcapng",
        hash_budget=0,
    )
    assert rep["written"]["secrets"] == 1  # the TLS 1.2 session's CLIENT_RANDOM only
    kl = capture_keylog(tmp_path / "o.pcapng")
    assert list(kl.secrets.values()) == [
        {"CLIENT_RANDOM": next(iter(KeyLog.from_files([sessions["12"]["keylog"]]).secrets.values()))["CLIENT_RANDOM"]}
    ]


def test_bad_keylog_file_is_a_clear_error(tmp_path, sessions):
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, vars=dict(os.environ))
    st = main(["wire-check", str(sessions["13"]["pcap"]), "--imei", IMEI, "--keylog", str(tmp_path / "nope")], env)
    assert st == ExitStatus.ERROR and "cannot read key log" in err.getvalue()


@needs_tools
def test_dsb_written_by_editcap_inject_secrets(sessions, tmp_path):
    # a DSB made by Wireshark's own tool (editcap --inject-secrets tls,KEYLOG): read as a key log
    r = sessions["12"]
    out = tmp_path / "editcap.pcapng"
    subprocess.run(
        ["editcap", "--inject-secrets", f"tls,{r['keylog']}", str(r["pcap"]), str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    flows, rep = decrypt_capture(out)
    assert rep["flows"] == {"decrypted": 1} and rep["keylog"]["sources"] == []
    assert bytes(flows[0].data["c2s"]) == REQUEST * 50 and bytes(flows[0].data["s2c"]) == b"y" * 100000


@needs_tools
def test_tls13_early_data_resumed_session(tmp_path):
    # 0-RTT: s_client resumes with -sess_in and sends -early_data before the handshake completes;
    # those records open with CLIENT_EARLY_TRAFFIC_SECRET (the server here answers nothing)
    import time

    from tls_capture import _wait_accept, free_port, make_cert, tcpdump

    cert, key = make_cert(tmp_path)
    port = free_port()
    early = tmp_path / "early.txt"
    early.write_bytes(b"EARLY DATA GET /\r\n")
    keylog, sess, pcap = tmp_path / "k.log", tmp_path / "sess.pem", tmp_path / "e.pcap"
    server = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-accept",
            str(port),
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-early_data",
            "-naccept",
            "2",
            "-tls1_3",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_accept(server)
        with tcpdump(pcap, port):
            first = subprocess.Popen(
                [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-tls1_3",
                    "-sess_out",
                    str(sess),
                    "-keylogfile",
                    str(keylog),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            first.stdin.write(b"first\n")
            first.stdin.flush()
            deadline = time.monotonic() + 30  # s_client writes -sess_out when the ticket comes
            while not sess.exists() and time.monotonic() < deadline and first.poll() is None:
                time.sleep(0.05)
            first.stdin.close()
            first.wait(30)
            subprocess.run(
                [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-tls1_3",
                    "-sess_in",
                    str(sess),
                    "-early_data",
                    str(early),
                    "-keylogfile",
                    str(keylog),
                ],
                input=b"second\n",
                capture_output=True,
                timeout=30,
            )
    finally:
        server.kill()
        server.wait(30)
    flows, rep = decrypt_capture(pcap, [keylog])
    assert [f.summary["status"] for f in flows] == ["decrypted", "decrypted"], [f.summary for f in flows]
    assert bytes(flows[0].data["c2s"]) == b"first\n"
    assert bytes(flows[1].data["c2s"]) == b"EARLY DATA GET /\r\nsecond\n"
    assert "CLIENT_EARLY_TRAFFIC_SECRET" in flows[1].summary["secrets"]
    # without the early secret the 0-RTT records are not silently skipped
    kl = tmp_path / "no-early.log"
    kl.write_text("".join(x + "\n" for x in keylog.read_text().splitlines() if "EARLY" not in x))
    flows, _ = decrypt_capture(pcap, [kl])
    assert flows[1].summary["status"] == "no-secret" and "0-RTT" in flows[1].summary["c2s"]["detail"]


@needs_tools
def test_tls12_renegotiation_is_reported_not_hidden(tmp_path):
    # s_client's "R" line renegotiates (s_server -client_renegotiation allows it, OpenSSL 3): what
    # came before is decrypted, what comes after is not followed and the flow says so
    import time

    from tls_capture import _wait_accept, free_port, make_cert, tcpdump

    cert, key = make_cert(tmp_path)
    port = free_port()
    keylog, pcap = tmp_path / "k.log", tmp_path / "r.pcap"
    server = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-accept",
            str(port),
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-rev",
            "-naccept",
            "1",
            "-tls1_2",
            "-client_renegotiation",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_accept(server)
        with tcpdump(pcap, port):
            client = subprocess.Popen(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-keylogfile", str(keylog)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for line in (b"hello\n", b"R\n", b"world\n"):
                time.sleep(0.4)
                client.stdin.write(line)
                client.stdin.flush()
            time.sleep(0.4)
            client.stdin.close()
            client.wait(30)
    finally:
        server.kill()
        server.wait(30)
    if keylog.read_text().count("CLIENT_RANDOM") < 2:
        pytest.skip("the renegotiation did not happen")
    (flow,), rep = decrypt_capture(pcap, [keylog])
    assert flow.summary["status"] == "renegotiated" and "renegotiation at record" in flow.summary["c2s"]["detail"]
    assert bytes(flow.data["c2s"]) == b"hello\n" and bytes(flow.data["s2c"]) == b"olleh\n"


def test_agent_events_tls_secrets_decrypt_without_keylog(sessions, tmp_path):
    # wire-check --agent-events with a trace's tls-secret events decrypts with no --keylog
    from hostctl.events import EventWriter, TlsSecret

    r = sessions["13"]
    with EventWriter(tmp_path / "events.jsonl") as w:
        for line in r["keylog"].read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                label, cr, secret = line.split()
                w.write(
                    TlsSecret(
                        app="com.android.mms",
                        pid=1,
                        host_ts=1.0,
                        label=label,
                        client_random=cr,
                        secret=secret,
                        module="libssl.so",
                    )
                )
    rep = wire_check(
        [r["pcap"]], [Identifier("imei", IMEI, "imei")], agent_events=[tmp_path / "events.jsonl"], hash_budget=0
    )
    assert rep["tls"]["flows"] == {"decrypted": 1}
    assert any(f["layer"] == "tls-decrypted" for f in rep["findings"])
