"""``make demo``: the main job. Audit the emulated lab on the leaky July 2014 build and on the
2014-08-10 OTA, and print both summaries.

Each audit is its own ``python -m hostctl audit --emulator`` process, with its own lab on a
private adb server (a free port, so a developer's adb server on 5037 is never touched; and Frida,
which follows the first adb server a process talks to, always follows the right one), driven
through the real adb binary, adbutils and Frida exactly as a rack of handsets. Evidence is left
under ``hostctl-runs/``. Then each report is compared with what its profile documents
(``audit_expectations``): the July build FAILs the checks the 2014 reports describe; the OTA
passes them, with the deterministic-encryption warning. Exit status 0 when both read so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .emulator.profiles import load_profile

PROFILES = ("miui-v5-2014-07", "miui-v5-2014-08-10")


def _compare(profile: str, report: dict) -> list[str]:
    """What differs from the profile's documented verdicts (empty: as documented)."""
    expected = load_profile(profile).audit_expectations
    got = {c["id"]: c["status"] for c in report["checks"]}
    problems = [f"{cid}: expected {want}, got {got.get(cid)}" for cid, want in expected.items() if got.get(cid) != want]
    if profile.endswith("08-10") and not any("deterministic" in w for c in report["checks"] for w in c["warnings"]):
        problems.append("no deterministic-encryption warning")
    return problems


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or ["hostctl-runs"])[0])
    ok = True
    for profile in PROFILES:
        print(f"\n== hostctl audit --emulator --profile {profile} --out {out}", flush=True)
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "hostctl", "audit", "--emulator", "--profile", profile,
                            "--out", str(out)], timeout=600)
        print(f"(exit {r.returncode}, {time.monotonic() - t0:.1f} s)", flush=True)
        try:
            report = json.loads((out / f"emulator-{profile}" / "latest" / "report.json").read_text())
        except (OSError, ValueError) as exc:
            print(f"no report for {profile}: {exc}")
            ok = False
            continue
        problems = _compare(profile, report)
        for p in problems:
            print(f"  NOT AS DOCUMENTED: {p}")
        ok = ok and not problems
    print("\nBoth audits read as their profiles document (and as the 2014 reports describe)." if ok else
          "\nAn audit did not read as its profile documents: see above.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
