"""``make demo``: boot an emulated lab on a private adb server and show what it can do.

Uses only the public paths a lab engineer would: the real adb binary, adbutils and Frida through
the adb server. Cleans up everything it started (lab, app processes, adb server).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .emulator.lab import LabConfig, LabThread, adb_binary, ensure_adb_server, kill_adb_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _adb(port: int, *args: str) -> str:
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))
    r = subprocess.run([adb_binary(), *args], env=env, capture_output=True, timeout=60)
    return (r.stdout + r.stderr).decode(errors="replace").rstrip() + f"\n(exit {r.returncode})"


def _hostctl(*argv: str) -> None:
    from .cli import Environment, main as cli_main

    status = cli_main(list(argv), Environment())
    print(f"(exit {int(status)})")


def main() -> int:
    port = _free_port()
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    with tempfile.TemporaryDirectory(prefix="hostctl-demo-") as home:
        ensure_adb_server(port)
        try:
            for profile in ("miui-v5-2014-07", "miui-v5-2014-08-10"):
                t0 = time.monotonic()
                config = LabConfig(adb_port=port, handsets=2, profile=profile, home=Path(home) / profile)
                with LabThread(config) as lt:
                    _step(f"emulated lab, profile {profile}: up in {time.monotonic() - t0:.2f} s")
                    s = lt.lab.handsets[0].serial
                    _step("adb devices -l   (the real adb server, version 36)")
                    print(_adb(port, "devices", "-l"))
                    _step(f"adb -s {s} shell getprop | grep -E 'miui|operator|imei'")
                    print(_adb(port, "-s", s, "shell", "getprop | grep -E 'miui|operator|imei'"))
                    _step(f"adb -s {s} shell 'service call iphonesubinfo 1'   (IMEI as a Parcel)")
                    print(_adb(port, "-s", s, "shell", "service call iphonesubinfo 1"))
                    _step("hostctl identity --all --redact   (every SIM slot, with where each value came from)")
                    _hostctl("identity", "--all", "--redact")
                    _step(f"hostctl info -s {s}")
                    _hostctl("info", "-s", s)
                    _step(f"adb -s {s} shell 'settings get secure cloud_messaging_on; echo err >&2; exit 3'")
                    print(_adb(port, "-s", s, "shell", "settings get secure cloud_messaging_on; echo err >&2; exit 3"))
                    _step(f"frida.get_device('{s}').enumerate_processes()   (through adb tcp:27042)")
                    import frida

                    device = frida.get_device(s, timeout=10)
                    apps = [p for p in device.enumerate_processes()]
                    for p in apps:
                        print(f"  pid {p.pid:>7}  {p.name}")
        finally:
            kill_adb_server(port)
    print("\nThe audit (issue 7) will replace this tour; see README.md for the CLI.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
