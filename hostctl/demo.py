"""``hostctl demo`` (and ``make demo``): the main job. Audit the emulated lab on the leaky July
2014 build and on the 2014-08-10 OTA, and print both summaries.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .emulator.profiles import load_profile

PROFILES = ("miui-v5-2014-07", "miui-v5-2014-08-10")
AUDIT_TIMEOUT = 600.0


def _compare(profile: str, report: dict) -> list[str]:
    """What differs from the profile's documented verdicts (empty: as documented)."""
    expected = load_profile(profile).audit_expectations
    got = {c["id"]: c["status"] for c in report["checks"]}
    problems = [f"{cid}: expected {want}, got {got.get(cid)}" for cid, want in expected.items() if got.get(cid) != want]
    if profile.endswith("08-10") and not any("deterministic" in w for c in report["checks"] for w in c["warnings"]):
        problems.append("no deterministic-encryption warning")
    return problems


def run_demo(
    out: Path,
    *,
    say: Callable[[str], None] = print,
    timeout: float = AUDIT_TIMEOUT,
    profiles: tuple[str, ...] = PROFILES,
    child_stdout: Any = None,
) -> dict[str, Any]:
    """Run both audits; their summaries go to this process's stdout as they come (or to
    ``child_stdout``, a file object, such as stderr when stdout carries JSON). Returns
    ``{"ok", "out", "profiles": [{"profile", "exit_status", "seconds", "run", "problems"}]}``."""
    results = []
    for profile in profiles:
        say(f"\n== hostctl audit --emulator --profile {profile} --out {out}")
        sys.stdout.flush()
        t0 = time.monotonic()
        try:
            status: int | None = subprocess.run(
                [sys.executable, "-m", "hostctl", "audit", "--emulator", "--profile", profile, "--out", str(out)],
                timeout=timeout,
                stdout=child_stdout,
            ).returncode
        except subprocess.TimeoutExpired:
            status = None
        seconds = time.monotonic() - t0
        say(f"(exit {status}, {seconds:.1f} s)" if status is not None else f"(no result within {timeout:.0f} s)")
        entry: dict[str, Any] = {
            "profile": profile,
            "exit_status": status,
            "seconds": round(seconds, 1),
            "run": None,
            "problems": [],
        }
        latest = out / f"emulator-{profile}" / "latest"
        try:
            report = json.loads((latest / "report.json").read_text())
            entry["run"] = str(latest.resolve())
            entry["problems"] = _compare(profile, report)
        except (OSError, ValueError) as exc:
            entry["problems"] = [f"no report: {exc}"]
        for p in entry["problems"]:
            say(f"  NOT AS DOCUMENTED: {p}")
        results.append(entry)
    ok = all(not r["problems"] for r in results)
    audits = "Both audits" if len(results) > 1 else "The audit"
    say(
        f"\n{audits} read as their profiles document (and as the 2014 reports describe)."
        if ok
        else "\nAn audit did not read as its profile documents: see above."
    )
    return {"ok": ok, "out": str(out), "profiles": results}


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or ["hostctl-runs"])[0])
    return 0 if run_demo(out)["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
