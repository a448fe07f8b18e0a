"""Benchmarks for the host controller (issue 3). Run: ``make bench`` or
``.venv/bin/python -m benchmarks.bench_identity [--quick]``.

The lab runs in its own process (`hostctl emulator up --detach --no-apps`), so the controller's
threads do not share a GIL with the emulated handsets. Figures are ratios against a reference
measured in the same run:

1. `hostctl identity --all` over 16 handsets vs `hostctl identity -s SERIAL` for one (both
   through the CLI entry point in-process, as CI pipelines and the pytest plugin call it; median
   of N runs each).                                                                target <= 2.5x
   With it: the CPU the lab and the controller spent per `--all`, divided by the cores (no
   schedule can beat that on this machine, since all 16 emulated handsets share its cores with
   the controller), and the same two commands run as new `python -m hostctl` processes.
2. One `hostctl identity -s SERIAL` vs the equivalent sequence of `adb -s SERIAL shell ...` CLI
   invocations (getprop, then the same `service call`s identity made), median of N. target <= 0.5x
   Also printed, not targeted: a fresh `python -m hostctl identity` process (interpreter start and
   imports included) against the same reference.
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
from pathlib import Path

from hostctl.cli import Environment
from hostctl.cli import main as cli_main
from hostctl.emulator.lab import adb_binary, ensure_adb_server, kill_adb_server, read_lab_file

from .bench_emulator import free_port, row


def _cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli_main(list(argv), Environment(stdout=out, stderr=err, vars=env))
    if status != 0:
        raise RuntimeError(f"hostctl {' '.join(argv)} exited {status}: {err.getvalue()}")
    return status, out.getvalue()


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _lab_up(env: dict[str, str], handsets: int, profile: str) -> list[str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hostctl",
            "emulator",
            "up",
            "--detach",
            "--no-apps",
            "--handsets",
            str(handsets),
            "--profile",
            profile,
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"emulator up failed: {proc.stderr}")
    return [h["serial"] for h in json.loads(proc.stdout)["handsets"]]


def _lab_down(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "hostctl", "emulator", "down"], env=env, capture_output=True, timeout=120)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_all_vs_one(env: dict[str, str], serials: list[str], runs: int, lab_pid: int) -> None:
    one = _median_time(lambda: _cli(env, "identity", "-s", serials[0], "--json"), runs)
    cpu0 = _cpu_seconds(lab_pid) + _cpu_seconds(os.getpid())
    every = _median_time(lambda: _cli(env, "identity", "--all", "--json"), runs)
    cpu = (_cpu_seconds(lab_pid) + _cpu_seconds(os.getpid()) - cpu0) / runs
    _, out = _cli(env, "identity", "--all", "--json")
    count = len(json.loads(out)["handsets"])
    ratio = every / one
    row(
        f"identity --all ({count} handsets)",
        f"{every * 1000:.1f} ms",
        f"{one * 1000:.1f} ms",
        ratio,
        "<= 2.5x",
        ratio <= 2.5,
    )
    cores = os.cpu_count() or 1
    floor = cpu / cores
    row(
        f"  CPU floor on {cores} cores (lab+ctl)",
        f"{floor * 1000:.1f} ms",
        f"{one * 1000:.1f} ms",
        floor / one,
        "(info)",
        True,
    )
    cmd = [sys.executable, "-m", "hostctl", "identity", "--json"]
    p_one = _median_time(
        lambda: subprocess.run([*cmd, "-s", serials[0]], env=env, capture_output=True, timeout=60, check=True),
        max(3, runs // 3),
    )
    p_all = _median_time(
        lambda: subprocess.run([*cmd, "--all"], env=env, capture_output=True, timeout=60, check=True), max(3, runs // 3)
    )
    row(
        "  as new processes: --all vs one",
        f"{p_all * 1000:.1f} ms",
        f"{p_one * 1000:.1f} ms",
        p_all / p_one,
        "<= 2.5x",
        p_all / p_one <= 2.5,
    )


def _equivalent_adb_commands(env: dict[str, str], serial: str) -> list[list[str]]:
    _, out = _cli(env, "identity", "-s", serial, "--json")
    doc = json.loads(out)
    calls = [["shell", "getprop"]]
    for a in doc["attempts"]:
        if a["strategy"] == "service_call" and a["detail"].startswith("`"):
            calls.append(["shell", "service", "call", *a["detail"].split("`")[1].split()])
        if a["strategy"] == "dumpsys" and a["slot"] in (0, None):
            calls.append(["shell", "dumpsys", "iphonesubinfo"])
    return [["-s", serial, *c] for c in calls]


def bench_vs_adb_cli(env: dict[str, str], serial: str, runs: int) -> None:
    adb = adb_binary()
    calls = _equivalent_adb_commands(env, serial)

    def adb_sequence() -> None:
        for c in calls:
            subprocess.run([adb, *c], env=env, capture_output=True, timeout=30, check=True)

    reference = _median_time(adb_sequence, runs)
    ours = _median_time(lambda: _cli(env, "identity", "-s", serial, "--json"), runs)
    ratio = ours / reference
    row(
        f"identity vs {len(calls)} `adb shell`s",
        f"{ours * 1000:.1f} ms",
        f"{reference * 1000:.1f} ms",
        ratio,
        "<= 0.5x",
        ratio <= 0.5,
    )
    process = _median_time(
        lambda: subprocess.run(
            [sys.executable, "-m", "hostctl", "identity", "-s", serial, "--json"],
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        ),
        max(3, runs // 2),
    )
    row(
        "  (as a new python process)",
        f"{process * 1000:.1f} ms",
        f"{reference * 1000:.1f} ms",
        process / reference,
        "(info)",
        True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    ap.add_argument("--profile", default="miui-v5-2014-07")
    args = ap.parse_args(argv)
    runs = 5 if args.quick else 15
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port), HOSTCTL_HOME=home)
        env.pop("ANDROID_SERIAL", None)
        ensure_adb_server(port)
        try:
            print(f"identity benchmarks on a private adb server, port {port}, profile {args.profile}\n")
            serials = _lab_up(env, 16, args.profile)
            lab_pid = int(read_lab_file(Path(home), port)["pid"])
            bench_all_vs_one(env, serials, runs, lab_pid)
            bench_vs_adb_cli(env, serials[0], runs)
        finally:
            _lab_down(env)
            kill_adb_server(port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
