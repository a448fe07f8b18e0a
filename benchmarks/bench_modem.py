"""Benchmark for the emulated modem (issue 6). Run: ``.venv/bin/python -m benchmarks.bench_modem
[--quick]`` (``make bench`` runs it with the others).

An SMS from a handset to the lab's modem is reported by ``+CMTI`` <= 100 ms after the handset
sends it (median). Measured from ``LabHandset.send_sms`` to the moment a pyserial client reading
the modem's pty has the whole ``+CMTI`` line; printed beside a reference measured in the same
run: a bare round trip through a fresh pty pair (write on one side, read on the other).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import serial

from hostctl.emulator.lab import LabConfig, LabThread, free_loopback_port

TARGET = 0.100


free_port = free_loopback_port


def pty_round_trip(n: int) -> float:
    import termios
    import tty

    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(master, b'\r\n+CMTI: "SM",1\r\n')
            got = b""
            while not got.endswith(b'\r\n+CMTI: "SM",1\r\n'):
                got += os.read(slave, 64)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(master)
        os.close(slave)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    runs = 15 if args.quick else 100
    with (
        tempfile.TemporaryDirectory() as home,
        LabThread(LabConfig(adb_port=free_port(), handsets=1, home=home, with_apps=False, connect=False)) as lt,
    ):
        info = lt.lab.modem_info()
        lh = lt.lab.handsets[0]
        port = serial.serial_for_url(info["pty"], timeout=2)
        port.write(b"ATE0;+CNMI=2,1,0,0,0;+CMGF=0\r")
        time.sleep(0.2)
        port.reset_input_buffer()
        times = []
        for i in range(runs):
            t0 = time.perf_counter()
            lh.send_sms(info["number"], f"benchmark {i}")
            line = port.read_until(b"\r\n+CMTI: ", 200)
            line += port.read_until(b"\r\n", 32)
            dt = time.perf_counter() - t0
            if b"+CMTI:" not in line:
                print("modem: no +CMTI within 2 s", line)
                return 1
            times.append(dt)
            if i % 20 == 19:  # keep the SIM from filling up (30 messages)
                port.write(b"AT+CMGD=1,4\r")
                port.read_until(b"OK\r\n", 200)
        port.close()
    ref = pty_round_trip(runs)
    med = statistics.median(times)
    ok = med <= TARGET
    print(
        f"{'handset SMS -> modem +CMTI (median)':<38} {med * 1000:9.2f} ms   ref {ref * 1000:7.3f} ms "
        f"(bare pty round trip)   ratio {med / ref:8.1f}   target <= 100 ms {'PASS' if ok else 'MISS'}"
        f"   (p90 {sorted(times)[int(len(times) * 0.9)] * 1000:.2f} ms, n={runs})",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
