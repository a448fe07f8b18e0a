"""Benchmarks for the emulated handset (issue 2). Run: ``make bench`` or
``.venv/bin/python -m benchmarks.bench_emulator [--quick]``.

Every figure is printed beside a reference measured in the same run, as a ratio, because this
machine is noisy and absolute times drift:

1. lab start: `hostctl emulator up --detach --handsets 2` until both are `device` in the adb
   server, median of N runs; reference: `adb devices` CLI round trip (same server).   target <= 1.5 s
2. adbutils `shell("true")` median round trip vs adbutils `server_version()` (host only), >= 200
   calls each; the shell is real mksh forked in the handset's sandbox.  target <= 3x (issue 12)
3. `adb push` / `adb pull` of 200 MB; reference: the same bytes through a plain loopback TCP
   socket pair in this process.                                                      target >= 300 MB/s
4. 32 handsets in one lab, each having run a shell: RSS of the lab process plus every process it
   started (app processes, each handset's sandbox: unshare, bwrap, the launcher), per handset (PSS
   shown too, which does not count shared pages twice).                              target <= 40 MB
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import adbutils

from hostctl.emulator.lab import (
    LabConfig,
    LabThread,
    adb_binary,
    ensure_adb_server,
    free_loopback_port,
    kill_adb_server,
)

free_port = free_loopback_port


def row(name: str, value: str, ref: str, ratio: float, target: str, ok: bool) -> None:
    print(
        f"{name:<34} {value:>14}   ref {ref:>14}   ratio {ratio:7.2f}   target {target:<12} {'PASS' if ok else 'MISS'}",
        flush=True,
    )


def bench_lab_start(port: int, runs: int) -> None:
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))
    client = adbutils.AdbClient(port=port, socket_timeout=10)
    times, refs = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as home:
            env["HOSTCTL_HOME"] = home
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "hostctl", "emulator", "up", "--detach", "--handsets", "2"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            t_device = None
            while time.perf_counter() - t0 < 60:
                states = [d.state for d in client.list()]
                if states.count("device") >= 2:
                    t_device = time.perf_counter() - t0
                    break
                time.sleep(0.005)
            proc.wait(60)
            t1 = time.perf_counter()
            subprocess.run([adb_binary(), "devices"], env=env, capture_output=True, timeout=30)
            refs.append(time.perf_counter() - t1)
            subprocess.run(
                [sys.executable, "-m", "hostctl", "emulator", "down"], env=env, capture_output=True, timeout=60
            )
            if t_device is None:
                print("lab start: handsets never reached 'device'", proc.stderr.read().decode()[-500:])
                return
            times.append(t_device)
    med, ref = statistics.median(times), statistics.median(refs)
    row("lab of 2: up -> both device", f"{med:.3f} s", f"{ref:.3f} s", med / ref, "<= 1.5 s", med <= 1.5)


def _median_round_trips(device: adbutils.AdbDevice, client: adbutils.AdbClient, calls: int) -> tuple[float, float]:
    for _ in range(10):
        device.shell("true")
        client.server_version()
    shell, host = [], []
    for _ in range(calls):
        t = time.perf_counter()
        device.shell("true")
        shell.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.server_version()
        host.append(time.perf_counter() - t)
    return statistics.median(shell), statistics.median(host)


def bench_shell_round_trip(port: int, serial: str, calls: int) -> None:
    """adbutils 2.12 makes an extra server_version() connection inside every shell() on a device
    addressed by serial (AdbDevice.open_transport), and sleeps 10 ms closing each connection; so
    by serial the ratio cannot drop below 2.0 whatever the device does. Addressed by transport id
    (same adbutils call, no extra connection) the ratio shows what the device itself adds."""
    client = adbutils.AdbClient(port=port, socket_timeout=10)
    tid = next(d.transport_id for d in client.list(extended=True) if d.serial == serial)
    for label, device in (("serial", client.device(serial)), ("transport id", client.device(transport_id=tid))):
        s, h = _median_round_trips(device, client, calls)
        row(f"shell('true') by {label} x{calls}", f"{s * 1e3:.3f} ms", f"{h * 1e3:.3f} ms", s / h, "<= 3x", s / h <= 3)


def _loopback_throughput(data: bytes) -> float:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    received = [0]

    def sink():
        c, _ = srv.accept()
        with c:
            buf = bytearray(1 << 20)
            while n := c.recv_into(buf):
                received[0] += n

    t = threading.Thread(target=sink)
    t.start()
    t0 = time.perf_counter()
    with socket.create_connection(srv.getsockname()) as c:
        c.sendall(data)
    t.join()
    srv.close()
    return len(data) / (time.perf_counter() - t0) / 1e6


def bench_push_pull(port: int, serial: str, size_mb: int, runs: int) -> None:
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "blob"
        data = os.urandom(size_mb * 1_000_000)
        src.write_bytes(data)
        ref = statistics.median(_loopback_throughput(data) for _ in range(runs))
        pushes, pulls = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(
                [adb_binary(), "-s", serial, "push", str(src), "/sdcard/blob"],
                env=env,
                check=True,
                capture_output=True,
                timeout=300,
            )
            pushes.append(len(data) / (time.perf_counter() - t0) / 1e6)
            t0 = time.perf_counter()
            subprocess.run(
                [adb_binary(), "-s", serial, "pull", "/sdcard/blob", str(src) + ".back"],
                env=env,
                check=True,
                capture_output=True,
                timeout=300,
            )
            pulls.append(len(data) / (time.perf_counter() - t0) / 1e6)
        assert Path(str(src) + ".back").read_bytes() == data
    for name, vals in (("push", pushes), ("pull", pulls)):
        v = statistics.median(vals)
        row(f"adb {name} {size_mb} MB", f"{v:.0f} MB/s", f"{ref:.0f} MB/s", v / ref, ">= 300 MB/s", v >= 300)


def _mem_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def bench_memory(port: int, handsets: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        base_rss, base_pss = _mem_kb(os.getpid())
        t0 = time.perf_counter()
        with LabThread(LabConfig(adb_port=port, handsets=handsets, home=Path(home), connect_timeout=60)) as lt:
            elapsed = time.perf_counter() - t0
            client = adbutils.AdbClient(port=port, socket_timeout=30)
            for h in lt.lab.handsets:  # every handset's sandbox is up
                client.device(h.serial).shell("true")
            time.sleep(1.0)
            rss, pss = _mem_kb(os.getpid())
            rss -= base_rss
            pss -= base_pss
            for pid in _descendants(os.getpid()):
                r, p = _mem_kb(pid)
                rss += r
                pss += p
    per_rss, per_pss = rss / handsets / 1024, pss / handsets / 1024
    row(
        f"{handsets} handsets: RSS per handset",
        f"{per_rss:.1f} MB",
        f"PSS {per_pss:.1f} MB",
        per_rss / 40,
        "<= 40 MB",
        per_rss <= 40,
    )
    print(f"   ({handsets} handsets up in {elapsed:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs, smaller sizes (a smoke run)")
    ap.add_argument("--only", choices=["start", "shell", "transfer", "memory"])
    args = ap.parse_args(argv)
    port = free_port()
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    ensure_adb_server(port)
    try:
        print(f"benchmarks on a private adb server, port {port}; ratios are against the reference of the same run\n")
        if args.only in (None, "start"):
            bench_lab_start(port, 3 if args.quick else 7)
        if args.only in (None, "shell", "transfer"):
            with (
                tempfile.TemporaryDirectory() as home,
                LabThread(LabConfig(adb_port=port, handsets=1, home=Path(home), with_apps=False)) as lt,
            ):
                serial = lt.lab.handsets[0].serial
                if args.only in (None, "shell"):
                    bench_shell_round_trip(port, serial, 200 if args.quick else 500)
                if args.only in (None, "transfer"):
                    bench_push_pull(port, serial, 50 if args.quick else 200, 1 if args.quick else 3)
        if args.only in (None, "memory"):
            bench_memory(port, 8 if args.quick else 32)
    finally:
        kill_adb_server(port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
