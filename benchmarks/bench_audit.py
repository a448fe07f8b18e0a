"""Benchmark for the audit (issue 7). Run: ``.venv/bin/python -m benchmarks.bench_audit``.

Target: a full audit of one profile on the emulated lab in <= 20 s wall on a 2-core machine,
lab boot and shutdown included (what ``hostctl audit --emulator`` costs a person). Each profile's
audit runs as a new ``python -m hostctl audit --emulator`` process; the per-phase times come from
its report.json. Reference, measured in the same run: the same lab booted and stopped with
nothing done (``python -m hostctl emulator up --detach`` then ``down``), so the ratio says what
the audit itself adds to the lab's own start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostctl.emulator.lab import free_loopback_port

TARGET = 20.0
PROFILES = ("miui-v5-2014-07", "miui-v5-2014-08-10")


def _lab_only(home: Path) -> float:
    port = free_loopback_port()
    env = dict(os.environ, HOSTCTL_HOME=str(home), ANDROID_ADB_SERVER_PORT=str(port))
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "hostctl", "emulator", "up", "--detach", "--no-relay", "--no-consoles"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [sys.executable, "-m", "hostctl", "emulator", "down"], env=env, check=True, capture_output=True, timeout=120
    )
    wall = time.perf_counter() - t0
    from hostctl.emulator.lab import kill_adb_server

    kill_adb_server(port)
    return wall


def main(argv: list[str] | None = None) -> int:
    status = 0
    with tempfile.TemporaryDirectory(prefix="bench_audit") as tmp:
        ref = _lab_only(Path(tmp) / "ref")
        for profile in PROFILES:
            env = dict(os.environ, HOSTCTL_HOME=str(Path(tmp) / profile))
            env.pop("ANDROID_ADB_SERVER_PORT", None)
            t0 = time.perf_counter()
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hostctl",
                    "audit",
                    "--emulator",
                    "--profile",
                    profile,
                    "--out",
                    str(Path(tmp) / "runs"),
                    "--json",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            wall = time.perf_counter() - t0
            doc = json.loads(r.stdout)
            ok = wall <= TARGET
            status |= 0 if ok else 1
            print(
                f"audit {profile:<20} {wall:6.2f} s   ref {ref:5.2f} s (lab up + down, nothing done)   "
                f"ratio {wall / ref:5.2f}   target <= {TARGET:.0f} s {'PASS' if ok else 'MISS'}   "
                f"(exit {r.returncode}; {doc['summary']})",
                flush=True,
            )
            for p in doc["phases"]:
                print(f"    {p['name']:<46} {p['seconds']:6.2f} s  {p['status']}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
