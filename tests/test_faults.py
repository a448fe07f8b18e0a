"""The fault matrix as a standing suite: an audit stopped (SIGINT) at every phase boundary, at
moments inside the wind-down (recorders stopping, collection, analysis, evaluation, each report
file), and while ``audit --emulator`` boots its lab; the adb server dying mid-audit. Every case
asserts the run folder is consistent (``verify()`` ok: every file hashed, none unlisted), the exit
status is the documented one (130 interrupted; 4 a host fault left a check unjudged), the three
reports are there, and nothing the run started is left running (its adb server, its lab's app
processes: found by a token in their environment or by the audit's session).

The stop points are the audit's named moments (``HOSTCTL_AUDIT_SIGNAL_AT``: the audit sends
itself SIGINT there, as a Ctrl-C at that moment would); the lab boot is interrupted from outside,
by a real SIGINT once the audit says it is booting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from hostctl.audit.run import SIGNAL_AT_ENV
from hostctl.evidence import verify
from hostctl.report import CHECK_IDS, validate_report

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "miui-v5-2014-07"
TESTBED = f"emulator-{PROFILE}"

PHASES = (
    "prepare",
    "fresh boot",
    "opt-in state",
    "add contact",
    "sms in and out",
    "call",
    "mi cloud login",
    "enable cloud messaging",
    "send to an online receiver",
    "send to an offline receiver and to the modem",
    "presence look-ups",
    "server store",
)
INSIDE_PHASES = ("boot:hs2",)  # inside a phase, while the handsets' threads run
WIND_DOWN = (
    "wind-down",
    "recorders:hs1",
    "recorders:hs2",
    "collect:hs2",
    "analysis:hs1",
    "analysis:hs2",
    "evaluate:opt-in-default",
    "evaluate:no-retention",
    "report:report.json",
    "report:junit.xml",
    "report:report.html",
)


class Audit:
    """``hostctl audit --emulator`` in a subprocess of its own session, with a token in its
    environment that every process it starts inherits (or its session id)."""

    def __init__(self, tmp_path: Path, *, signal_at: str | None = None) -> None:
        self.token = f"hostctl-fault-{uuid.uuid4().hex}"
        self.out = tmp_path / "runs"
        env = dict(
            os.environ, HOSTCTL_HOME=str(tmp_path / "home"), HOSTCTL_FAULT_TOKEN=self.token, TMPDIR=str(tmp_path)
        )
        env.pop("ANDROID_ADB_SERVER_PORT", None)
        env.pop(SIGNAL_AT_ENV, None)
        if signal_at:
            env[SIGNAL_AT_ENV] = signal_at
        self.tmp = tmp_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hostctl", "audit", "--emulator", "--profile", PROFILE, "--out", str(self.out)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stderr_lines: list[str] = []

    def processes(self, *, frida_daemon: bool = False) -> list[tuple[int, str]]:
        """Live processes this audit started: its token in their environment, or its session.
        Frida's own per-user helper daemon (``<tmp>/frida-<hash>/idund --background``, its
        IdunDaemonService: started by the first device enumeration, shared by every Frida client
        of the user and kept by Frida on purpose) is left out unless ``frida_daemon``; the
        fixture ends the one a test started (the test's TMPDIR gives it its own)."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == self.proc.pid:
                continue
            try:
                environ = Path(f"/proc/{d}/environ").read_bytes()
                stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if stat[0] == "Z":
                continue
            if not frida_daemon and "/idund" in cmd.split(" ", 1)[0]:
                continue
            if self.token.encode() in environ or int(stat[3]) == self.proc.pid:
                out.append((int(d), cmd[:120]))
        return out

    def wait_for_stderr(self, fragment: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            if fragment in line:
                return
        raise AssertionError(f"never said {fragment!r}: {''.join(self.stderr_lines)[-2000:]}")

    def finish(self, timeout: float = 240) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        err = "".join(self.stderr_lines) + err
        for _ in range(50):  # what the run started goes with it
            if not self.processes():
                break
            time.sleep(0.1)
        return self.proc.returncode, out, err

    def cleanup(self) -> None:
        for pid, _ in self.processes(frida_daemon=True):
            with_suppress(lambda pid=pid: os.kill(pid, signal.SIGKILL))

    @property
    def run_dir(self) -> Path:
        return self.out / TESTBED / "latest"


def with_suppress(fn) -> None:
    try:
        fn()
    except OSError:
        pass


@pytest.fixture
def audit_factory(tmp_path):
    made: list[Audit] = []

    def make(**kw) -> Audit:
        a = Audit(tmp_path, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        if a.proc.poll() is None:
            os.killpg(a.proc.pid, signal.SIGKILL)
        a.cleanup()


def assert_consistent_interrupted_run(a: Audit, rc: int, err: str) -> dict:
    assert rc == 130, f"exit {rc}\n{err[-3000:]}"
    assert "Traceback" not in err and "Event loop is closed" not in err, err[-3000:]
    run = a.run_dir
    for name in ("report.json", "junit.xml", "report.html", "manifest.json"):
        assert (run / name).is_file(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    v = verify(run)
    assert v.ok, v.to_json()
    doc = json.loads((run / "report.json").read_text())
    assert validate_report(doc) == [], validate_report(doc)
    assert doc["run"]["interrupted"] is True and doc["run"]["status"] == "interrupted" and doc["exit_status"] == 130
    assert [c["id"] for c in doc["checks"]] == list(CHECK_IDS)
    for c in doc["checks"]:
        assert c["reason"].strip() and ": ; " not in c["reason"] and not c["reason"].endswith(": "), c
    loose = [
        f"{oct(p.stat().st_mode & 0o777)} {p}"
        for p in [run.resolve(), *run.resolve().rglob("*")]
        if p.stat().st_mode & 0o077
    ]
    assert loose == [], "a run folder is private (0700 folders, 0600 files)"
    assert a.processes() == [], "left running"
    assert not [p for p in a.tmp.iterdir() if p.name.startswith("hostctl-audit-lab-")], "lab state left behind"
    return doc


@pytest.mark.parametrize("phase", PHASES)
def test_sigint_at_each_phase_boundary(audit_factory, phase):
    a = audit_factory(signal_at=f"phase:{phase}")
    rc, _, err = a.finish()
    doc = assert_consistent_interrupted_run(a, rc, err)
    assert doc["phases"][-1]["name"] == phase and doc["phases"][-1]["status"] == "interrupted"


@pytest.mark.parametrize("moment", INSIDE_PHASES)
def test_sigint_while_the_handsets_threads_run(audit_factory, moment):
    a = audit_factory(signal_at=moment)
    rc, _, err = a.finish()
    doc = assert_consistent_interrupted_run(a, rc, err)
    assert doc["phases"][-1]["name"] == "fresh boot" and doc["phases"][-1]["status"] == "interrupted"


@pytest.mark.parametrize("moment", WIND_DOWN)
def test_sigint_inside_the_wind_down(audit_factory, moment):
    a = audit_factory(signal_at=moment)
    rc, _, err = a.finish()
    doc = assert_consistent_interrupted_run(a, rc, err)
    assert [p["status"] for p in doc["phases"]] == ["ok"] * len(PHASES)  # the protocol had ended
    analysed = {h: (a.run_dir / f"handsets/{h}/wire-check.json").exists() for h in ("hs1", "hs2")}
    # a Ctrl-C in the wind-down skips the analysis still to come (the captures and traces are in
    # the folder, for wire-check later); what was analysed before it stays
    before_analysis = WIND_DOWN.index(moment) <= WIND_DOWN.index("analysis:hs1")
    if before_analysis:
        assert analysed == {"hs1": False, "hs2": False}
        assert any("interrupted before its wire analysis" in c["reason"] for c in doc["checks"])
        assert (a.run_dir / "handsets/hs1/wire.pcapng").is_file()
    elif moment == "analysis:hs2":
        assert analysed == {"hs1": True, "hs2": False}
    else:
        assert analysed == {"hs1": True, "hs2": True}


def test_sigint_while_the_lab_boots(audit_factory):
    a = audit_factory()
    a.wait_for_stderr("booting an emulated lab")
    time.sleep(0.3)
    os.kill(a.proc.pid, signal.SIGINT)
    rc, _, err = a.finish()
    doc = assert_consistent_interrupted_run(a, rc, err)
    assert all(c["status"] == "NOT-TESTABLE" for c in doc["checks"])


def test_the_adb_server_dying_mid_audit_is_no_complete_run(audit_factory):
    a = audit_factory()
    a.wait_for_stderr("send to an online receiver")
    servers = [pid for pid, cmd in a.processes() if "fork-server" in cmd]
    assert len(servers) == 1, a.processes()
    os.kill(servers[0], signal.SIGKILL)
    rc, _, err = a.finish()
    assert rc == 4, f"exit {rc}\n{err[-3000:]}"
    assert "Traceback" not in err
    run = a.run_dir
    manifest = json.loads((run / "manifest.json").read_text())
    doc = json.loads((run / "report.json").read_text())
    assert manifest["status"] == "degraded" and doc["run"]["status"] == "degraded", (manifest["status"], doc["run"])
    assert any(f["kind"] == "adb" for f in doc["run"]["host_faults"]), doc["run"]["host_faults"]
    assert validate_report(doc) == []
    for c in doc["checks"]:
        assert c["reason"].strip() and ": ; " not in c["reason"] and not c["reason"].endswith(": "), c
    assert verify(run).ok
    assert a.processes() == []
