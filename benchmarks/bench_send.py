"""One `hostctl send` round trip on the emulated lab (issue 4). Run:
``.venv/bin/python -m benchmarks.bench_send [--quick]``.

A lab of two handsets (OTA profile, apps running) in a process of its own; Cloud Messaging turned
on in both through the UI (`hostctl cm on`). Each run: trigger the send (SENDTO + Send tapped),
wait until the route is decided and both rows are present (`send_message` with the receiver).
Median of N, against a reference measured in the same run: one `adb shell true` round trip
through the adb CLI (the cost of a single command to a handset).       target <= 300 ms
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from hostctl.cli import Environment
from hostctl.cli import main as cli_main
from hostctl.cloud import send_message
from hostctl.device import AdbAddress, Handset
from hostctl.emulator.lab import adb_binary, ensure_adb_server, kill_adb_server

from .bench_emulator import free_port, row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    runs = 5 if args.quick else 25
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port), HOSTCTL_HOME=home)
        ensure_adb_server(port)
        try:
            up = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hostctl",
                    "emulator",
                    "up",
                    "--detach",
                    "--handsets",
                    "2",
                    "--no-modem",
                    "--no-relay",
                    "--no-consoles",
                    "--json",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if up.returncode != 0:
                raise RuntimeError(up.stderr)
            lab = json.loads(up.stdout)
            (a, _na), (b, nb) = [(h["serial"], h["number"]) for h in lab["handsets"]]
            for serial in (a, b):
                st = cli_main(
                    ["--adb", f"127.0.0.1:{port}", "cm", "on", "-s", serial, "--sim", "1"],
                    Environment(stdout=io.StringIO(), stderr=io.StringIO(), vars=env),
                )
                if st != 0:
                    raise RuntimeError(f"cm on {serial} failed")
            time.sleep(1.0)  # activation and bind
            server = AdbAddress("127.0.0.1", port)
            ha, hb = Handset(a, server), Handset(b, server)
            times, routes = [], []
            for i in range(runs):
                t0 = time.perf_counter()
                out = send_message(ha, nb, f"bench {i}", receiver=hb, timeout=30)
                times.append(time.perf_counter() - t0)
                routes.append(out.route)
            refs = []
            for _ in range(runs):
                t0 = time.perf_counter()
                subprocess.run([adb_binary(), "-s", a, "shell", "true"], env=env, capture_output=True, timeout=30)
                refs.append(time.perf_counter() - t0)
            med, ref = statistics.median(times), statistics.median(refs)
            print(f"send round trip on the emulated lab, {runs} runs, routes {sorted(set(map(str, routes)))}\n")
            row(
                "hostctl send round trip (median)",
                f"{med * 1000:.0f} ms",
                f"{ref * 1000:.1f} ms adb shell",
                med / ref,
                "<= 300 ms",
                med <= 0.300,
            )
        finally:
            subprocess.run(
                [sys.executable, "-m", "hostctl", "emulator", "down"], env=env, capture_output=True, timeout=120
            )
            kill_adb_server(port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
