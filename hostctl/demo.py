"""``make demo``: the main job. Audit the emulated lab on the leaky July 2014 build and on the
2014-08-10 OTA, and print both summaries.

Each audit boots its own lab on a private adb server (a free port, so a developer's adb server on
5037 is never touched), drives it through the real adb binary, adbutils and Frida exactly as a
rack of handsets, and leaves its evidence under ``hostctl-runs/``. Expected: the July build FAILs
the checks the 2014 reports describe; the OTA passes them, with the deterministic-encryption
warning. The demo's exit status is 0 when both audits read as expected.
"""

from __future__ import annotations

import sys
import time

from .cli import Environment, ExitStatus, main as cli_main

EXPECTED = {"miui-v5-2014-07": ExitStatus.CHECK_FAILED, "miui-v5-2014-08-10": ExitStatus.OK}


def main(argv: list[str] | None = None) -> int:
    out = (argv or ["hostctl-runs"])[0]
    ok = True
    for profile, expected in EXPECTED.items():
        print(f"\n== hostctl audit --emulator --profile {profile} --out {out}", flush=True)
        t0 = time.monotonic()
        status = cli_main(["audit", "--emulator", "--profile", profile, "--out", out], Environment())
        print(f"(exit {int(status)}, {time.monotonic() - t0:.1f} s)", flush=True)
        ok = ok and int(status) == int(expected)
    print("\nBoth audits read as the 2014 reports describe." if ok else
          "\nAn audit did not read as expected: see the summaries above.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
