"""Benchmark for the capture reader and TCP reassembly (issue 5). Run:
``.venv/bin/python -m benchmarks.bench_wire [--quick]`` (``make bench`` runs it with the others).

Targets: reading a 200 MB capture and reassembling its flows (with protocol identification), and
the whole ``wire-check`` of it (plus the scan of every stream for 10 identifiers in all their
forms), each at least 10x faster than ``tshark -r FILE -T fields -e frame.number -e tcp.stream``, measured on the
same file in the same run. Two captures are generated on the fly: one of full-size (MTU) TCP
segments written as pcapng, as the lab's wire tap writes them, and one of small segments (60-byte
payloads, each acknowledged: ~100-byte frames) written as classic pcap, as tcpdump does. Wall time
is the verdict (ours: best of three runs); CPU time (ours vs tshark's) is printed beside it
because the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostctl.wire.flows import FlowTable, NullConsumer
from hostctl.wire.pcapread import open_capture
from hostctl.wire.pcapwrite import PcapngWriter, PcapWriter, TcpConversation

TARGET = 10.0


def generate(path: Path, size: int, *, chunk: int, ng: bool) -> int:
    """Flows of ``chunk``-byte sends, alternating direction, until the file reaches ``size``."""
    rnd = random.Random(1)
    data = rnd.randbytes(chunk)
    with path.open("wb", buffering=1 << 20) as f:
        w = (PcapngWriter if ng else PcapWriter)(f)
        ts, i = 1_700_000_000.0, 0
        while f.tell() < size:
            conv = TcpConversation(w.packet, client=(f"10.0.{i >> 8 & 255}.{i & 255}", 30000 + i % 30000),
                                   server=("10.9.0.5", 443 if i % 3 else 5222))
            conv.open(ts)
            for k in range(20):
                conv.send(ts, "c2s" if k % 2 else "s2c", data)
                ts += 0.001
            conv.close(ts)
            i += 1
        return w.packets


class Bytes(NullConsumer):
    """Counts what is delivered (so the work cannot be skipped)."""

    def __init__(self) -> None:
        self.bytes = 0

    def data(self, flow, direction, offset, data, ts) -> None:  # noqa: ANN001
        self.bytes += len(data)


def ours(path: Path) -> tuple[float, float, int]:
    c0, t0 = time.process_time(), time.perf_counter()
    consumer = Bytes()
    with open_capture(path) as r:
        FlowTable(consumer).run(r)
    return time.perf_counter() - t0, time.process_time() - c0, consumer.bytes


def whole(path: Path) -> tuple[float, int]:
    """The whole ``wire-check`` (reader, reassembly, protocols, the identifier scan of every
    stream in all forms, opaque-value search, report) with 10 identifiers."""
    from hostctl.wire.check import WireCheck
    from hostctl.wire.identifiers import Identifier

    idents = [Identifier("imei", imei, f"imei{i}") for i, imei in enumerate(("867246020361859", "356938035643809"))]
    idents += [Identifier("imsi", f"46000123456789{i}", f"imsi{i}") for i in range(2)]
    idents += [Identifier("iccid", "89860012345678901238", "iccid0")]
    idents += [Identifier("msisdn", f"+86138123456{70 + i}", f"number{i}") for i in range(4)]
    idents += [Identifier("text", "hostctl benchmark message text", "text")]
    t0 = time.perf_counter()
    wc = WireCheck(idents, hash_budget=0)
    wc.add_capture(path)
    rep = wc.report()
    return time.perf_counter() - t0, len(wc.patterns) + 0 * len(rep["findings"])


def reader_only(path: Path) -> float:
    t0 = time.perf_counter()
    with open_capture(path) as r:
        for _ in r.records():
            pass
    return time.perf_counter() - t0


def tshark(path: Path, exe: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([exe, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.stream"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=1800)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20 MB captures instead of 200 MB")
    args = ap.parse_args(argv)
    exe = shutil.which("tshark")
    if exe is None:
        print("wire: skipped, tshark is not installed (the reference); apt install tshark", flush=True)
        return 0
    size = 20_000_000 if args.quick else 200_000_000
    status = 0
    with tempfile.TemporaryDirectory(prefix="bench_wire") as tmp:
        for label, chunk, ng in (("MTU segments, pcapng", 14600, True), ("small segments, pcap", 60, False)):
            path = Path(tmp) / ("capture.pcapng" if ng else "capture.pcap")
            packets = generate(path, size, chunk=chunk, ng=ng)
            mb = os.path.getsize(path) / 1e6
            ref_wall, ref_cpu = tshark(path, exe)
            # best of three for ours: a run is short (a second or less) next to tshark's, so one
            # burst of load from a neighbour can swamp it; tshark's long run averages that out
            runs = [ours(path) for _ in range(3)]
            wall, cpu, delivered = min(runs)
            read = reader_only(path)
            ratio = ref_wall / wall
            ok = ratio >= TARGET
            status |= 0 if ok else 1
            print(f"{'wire: ' + label:<38} {wall:8.2f} s   ref {ref_wall:7.2f} s (tshark -T fields frame.number "
                  f"tcp.stream)   ratio {ratio:6.1f}x   target >= {TARGET:.0f}x {'PASS' if ok else 'MISS'}   "
                  f"(cpu {cpu:.2f} s vs {ref_cpu:.2f} s = {ref_cpu / cpu:.1f}x; reader alone {read:.2f} s; "
                  f"{mb:.0f} MB, {packets} packets, {delivered / 1e6:.0f} MB reassembled)", flush=True)
            wc_wall, npat = min(whole(path) for _ in range(2))
            wc_ratio = ref_wall / wc_wall
            wc_ok = wc_ratio >= TARGET
            status |= 0 if wc_ok else 1
            print(f"{'wire-check: ' + label:<38} {wc_wall:8.2f} s   ref {ref_wall:7.2f} s (same tshark run)"
                  f"   ratio {wc_ratio:6.1f}x   target >= {TARGET:.0f}x {'PASS' if wc_ok else 'MISS'}   "
                  f"({npat} patterns from 10 identifiers; peak RSS "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB for a {mb:.0f} MB file)",
                  flush=True)
            path.unlink()
    return status


if __name__ == "__main__":
    sys.exit(main())
