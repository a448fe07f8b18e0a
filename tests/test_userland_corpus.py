"""Acceptance: the shared corpus of command lines that real tools send over `adb shell`, run
through the real adb client on an emulated Android 11 handset (the reference's SDK), against what
real mksh R59c + toybox 0.8.9 printed in an Android-like root (../shared/fidelity/README.md).

Every ``generic`` line must give the reference exit code and stdout, except the lines in
``DIFFERENT`` (each with the reason: a live value, a path, a pid). At least 95% must match.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hostctl.emulator.lab import LabConfig, LabThread

# ../shared/fidelity next to the repository (HOSTCTL_FIDELITY_DIR elsewhere, e.g. from a worktree)
FIDELITY = Path(
    os.environ.get("HOSTCTL_FIDELITY_DIR") or Path(__file__).resolve().parents[1] / ".." / "shared" / "fidelity"
)
CORPUS = FIDELITY / "shell_corpus.tsv"

# id -> why the emulated handset's output differs from the reference run (not a shell difference)
DIFFERENT: dict[str, str] = {
    "35": "ps is Android's, answered by the handset model (Android's processes, toybox's "
    "TOYBOX_ON_ANDROID format); Debian's toybox build prints its desktop help",
    "115": "ps is Android's (the model's process table), not the sandbox's two processes",
    "179": "Android has getprop (the reference root had none): the handset's SDK is 30",
    "331": "uname -m is the profile's ABI (arm64-v8a -> aarch64); the reference ran on x86_64",
    "337": "Android 11 has getenforce (Enforcing); the reference root had none",
    "391": "the handset's /system/priv-app holds its firmware's apps; the reference root one",
    "395": "the handset's /system/build.prop is its firmware's; the reference root's had 2 lines",
}
# ids whose stdout is a live value (a time, a pid, a size): the exit code must match, and stdout
# must have the reference's shape (same line count)
LIVE: dict[str, str] = {
    "7": "date with milliseconds",
    "93": "a process list header (Android's ps format, see DIFFERENT 35)",
    "155": "pgrep prints the pid of the matching shell",
    "273": "a process list header (Android's ps format)",
    "275": "a process list (pid 1 is Android's init here, ps itself in the reference)",
}


def _unescape(text: str) -> str:
    return re.sub(
        r"\\(x[0-9a-fA-F]{2}|.)",
        lambda m: {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "e": "\x1b"}.get(
            m.group(1), chr(int(m.group(1)[1:], 16)) if m.group(1).startswith("x") else "\\" + m.group(1)
        ),
        text,
    )


def _rows(kind: str) -> list[dict[str, str]]:
    with open(CORPUS, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if r["kind"] == kind]


@pytest.fixture(scope="module")
def android11(adb_port, tmp_path_factory):
    if not CORPUS.exists():
        pytest.skip(f"the shared fidelity corpus is not here ({CORPUS}): nothing to compare against")
    home = tmp_path_factory.mktemp("hostctl-home")
    with LabThread(LabConfig(adb_port=adb_port, handsets=1, profile="miui-12-android-11", home=home)) as lt:
        yield lt.lab.handsets[0]


def _shell(adb, serial: str, line: str) -> subprocess.CompletedProcess:
    return adb("-s", serial, "shell", line, timeout=30)


def _reset(root: Path) -> None:
    """The reference's writable state before each line (run_reference.sh): an empty
    /data/local/tmp and a sdcard holding Download and DCIM."""
    for rel in ("data/local/tmp", "sdcard"):
        top = root / rel
        for p in list(top.iterdir()):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for d in ("Download", "DCIM"):
        (root / "sdcard" / d).mkdir()
        os.chown(root / "sdcard" / d, 2000, 2000) if os.geteuid() == 0 else None


@pytest.mark.xdist_group("corpus")
def test_generic_lines_match_real_mksh_and_toybox(adb, android11):
    rows = _rows("generic")
    assert len(rows) > 100, "the corpus is smaller than the issue says: read the wrong file?"
    mismatches = []
    for r in rows:
        _reset(android11.handset.fs.root)
        res = _shell(adb, android11.serial, _unescape(r["command"]))
        out = res.stdout.decode("utf-8", "replace")
        want = _unescape(r["ref_stdout"])
        ok_rc = res.returncode == int(r["ref_rc"])
        if r["id"] in LIVE:
            ok = ok_rc and out.count("\n") == want.count("\n")
        else:
            ok = ok_rc and out == want
        if not ok and r["id"] not in DIFFERENT:
            mismatches.append(
                f"#{r['id']} {r['command']!r}: rc {res.returncode} (ref {r['ref_rc']}) "
                f"out {out[:200]!r} (ref {want[:200]!r}) err {res.stderr[:200]!r}"
            )
    matched = len(rows) - len(mismatches) - len([r for r in rows if r["id"] in DIFFERENT])
    print(f"{matched}/{len(rows)} generic lines match; {len(DIFFERENT)} listed as different")
    assert (len(rows) - len(mismatches)) / len(rows) >= 0.95 and not mismatches, "\n".join(mismatches)
