"""The audit end to end on the emulated lab, beyond the two shipped profiles (which hw_tests
covers): a profile that leaks one identifier one new way fails exactly the checks it should; a
handset killed mid-audit; the evidence folder (manifest hashes, tshark reads every pcapng);
--redact; --json; exit codes; an audit whose tracer cannot start fails closed. Each check on its
own (FAIL, PASS, NOT-TESTABLE, on an Evidence built by hand) is in tests/test_checks.py."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import yaml

from hostctl.audit import AuditOptions, run_audit
from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.emulator.profiles import load_profile
from hostctl.evidence import verify
from hostctl.report import CHECK_IDS, validate_report
from hostctl.testbed import testbed_for_lab as tb_for_lab

ROOT = Path(__file__).resolve().parent.parent


def _audit_cli(*args: str, home: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOSTCTL_HOME=str(home))
    env.pop("ANDROID_ADB_SERVER_PORT", None)  # --emulator runs its own server on a free port
    return subprocess.run(
        [sys.executable, "-m", "hostctl", "audit", "--emulator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _leaky_profile(tmp_path: Path) -> Path:
    """The OTA build, plus one new leak: the SHA-1 of the IMEI to the resolver in clear HTTP at
    boot, whatever the Cloud Messaging switch says."""
    ota = yaml.safe_load((ROOT / "hostctl/emulator/profiles/miui-v5-2014-08-10.yaml").read_text())
    behaviour = ota["behaviour"]
    behaviour["events"]["boot"] = list(behaviour["events"].get("boot") or []) + [
        {"endpoint": "resolver", "method": "GET", "fields": {"h": {"source": "imei", "protection": "sha1"}}}
    ]
    path = tmp_path / "leaky.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "extends": "miui-v5-2014-08-10",
                "name": "leaky-sha1-imei",
                "description": "the OTA with the IMEI's SHA-1 in clear HTTP at boot",
                "behaviour": behaviour,
            }
        )
    )
    load_profile(path)
    return path


def test_a_new_leak_fails_exactly_the_checks_it_should(tmp_path):
    profile = _leaky_profile(tmp_path)
    r = _audit_cli("--profile", str(profile), "--out", str(tmp_path / "runs"), "--json", home=tmp_path / "home")
    assert r.returncode == ExitStatus.CHECK_FAILED, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert validate_report(doc) == []
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert {k for k, v in status.items() if v == "FAIL"} == {"no-identifiers-before-opt-in", "transport-secure"}, status
    assert {k for k, v in status.items() if v != "FAIL"} == set(CHECK_IDS) - {
        "no-identifiers-before-opt-in",
        "transport-secure",
    }
    assert all(v == "PASS" for k, v in status.items() if v != "FAIL"), status
    before = next(c for c in doc["checks"] if c["id"] == "no-identifiers-before-opt-in")
    ev = before["evidence"][0]
    assert ev["host"] == "resolver.msg.xiaomi.net" and "imei" in ev["identifier"] and ev["form"].startswith("sha1")
    assert ev["file"].endswith("wire.pcapng") and ev["flow"] is not None and ev["offset"] is not None
    run = tmp_path / "runs" / doc["run"]["testbed"] / "latest"
    assert json.loads((run / "report.json").read_text()) == doc, "--json prints report.json's document"
    # the evidence folder: every file hashed, tshark reads every capture
    v = verify(run)
    assert v.ok, v.to_json()
    manifest = json.loads((run / "manifest.json").read_text())
    pcaps = [f["path"] for f in manifest["files"] if f["path"].endswith(".pcapng")]
    assert len(pcaps) == 2
    if shutil.which("tshark"):
        for p in pcaps:
            t = subprocess.run(["tshark", "-r", str(run / p), "-q"], capture_output=True, timeout=60)
            assert t.returncode == 0, t.stderr
    html = (run / "report.html").read_text()
    assert "transport-secure" in html and "<script" not in html
    # the consent MIUI showed before Cloud Messaging went on is evidence in the step and the phase
    steps = json.loads((run / "handsets/hs1/steps.json").read_text())
    steps = steps.get("steps", steps) if isinstance(steps, dict) else steps
    (cm_on,) = [s for s in steps if s["step"] == "cm on"]
    assert cm_on["ok"] and [c["kind"] for c in cm_on["result"]["consent"]] in (
        ["dialog_title_mx_rcs"],
        ["networking_allow_title"],
    )
    assert cm_on["result"]["sources"]["ui"]["consent_shown"] is True
    phase = next(p for p in doc["phases"] if p["name"] == "enable cloud messaging")
    assert any("accepted MIUI's" in n and "SIM 1" in n for n in phase["notes"]), phase


def test_redact_leaves_no_raw_identifier_in_reports_and_logs(tmp_path):
    r = _audit_cli(
        "--profile",
        "miui-v5-2014-07",
        "--checks",
        "phone-numbers-encrypted,no-retention",
        "--redact",
        "--out",
        str(tmp_path / "runs"),
        "--json",
        home=tmp_path / "home",
    )
    assert r.returncode == ExitStatus.CHECK_FAILED, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert [c["id"] for c in doc["checks"]] == ["phone-numbers-encrypted", "no-retention"]
    assert doc["run"]["redacted"] is True
    run = tmp_path / "runs" / doc["run"]["testbed"] / "latest"
    # the agent's events are evidence, kept raw: the identifiers the build sent are read from them
    sent = b""
    for line in (run / "handsets/hs1/trace/events.jsonl").read_text().splitlines():
        data = json.loads(line).get("data")
        if isinstance(data, dict) and data.get("base64"):
            sent += base64.b64decode(data["base64"]) + b"\n"
    numbers = {m.decode() for m in re.findall(rb"\+86\d{11}", sent)}
    imeis = {m.decode() for m in re.findall(rb'"imei": ?"(\d{15})"', sent)}
    assert numbers and imeis, "the 2014-07 build sends numbers and IMEIs in clear: the evidence shows them"
    for rel in [
        "report.json",
        "report.html",
        "junit.xml",
        "handsets/hs1/logcat.txt",
        "handsets/hs1/messages.json",
        "handsets/hs1/wire-check.json",
        "handsets/hs1/steps.json",
        "handsets/hs2/steps.json",
    ]:
        text = (run / rel).read_text()
        for v in numbers | imeis:
            assert v not in text and v.lstrip("+") not in text, (rel, v)
    assert "[msisdn:" in (run / "report.json").read_text()


def test_an_audit_whose_tracer_cannot_start_fails_closed(tmp_path):
    """The agent bundle missing (a wheel without it, HOSTCTL_AGENT_DIR at an empty folder): the
    July build must not look cleaner than it is. Exit 4 (not 3, not 0), the reason on stderr as it
    happens and in the summary, run.status degraded, and no check that reads the TLS plaintext
    PASSes."""
    empty = tmp_path / "agent"
    empty.mkdir()
    env = dict(os.environ, HOSTCTL_HOME=str(tmp_path / "home"), HOSTCTL_AGENT_DIR=str(empty))
    env.pop("ANDROID_ADB_SERVER_PORT", None)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hostctl",
            "audit",
            "--emulator",
            "--profile",
            "miui-v5-2014-07",
            "--out",
            str(tmp_path / "runs"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert r.returncode == ExitStatus.NOT_RUNNABLE == 4, r.stdout + r.stderr[-3000:]
    said = [ln for ln in r.stderr.splitlines() if "HOST FAULT (trace)" in ln]
    assert len(said) == 2 and all("tracing failed" in ln and "_agent.js not built" in ln for ln in said), r.stderr
    assert "DEGRADED" in r.stdout and "tracing failed" in r.stdout
    run = tmp_path / "runs" / "emulator-miui-v5-2014-07" / "latest"
    doc = json.loads((run / "report.json").read_text())
    assert validate_report(doc) == []
    assert doc["run"]["status"] == "degraded" and doc["exit_status"] == 4
    assert {f["kind"] for f in doc["run"]["host_faults"]} == {"trace"}
    assert {f["handset"] for f in doc["run"]["host_faults"]} == {"hs1", "hs2"}
    status = {c["id"]: c for c in doc["checks"]}
    for cid in (
        "no-identifiers-before-opt-in",
        "presence-lookup-minimal",
        "phone-numbers-encrypted",
        "content-encrypted",
        "imsi-after-login",
    ):
        assert status[cid]["status"] == "NOT-TESTABLE" and "trac" in status[cid]["reason"], status[cid]
    assert status["opt-in-default"]["status"] == "FAIL"  # what the settings show still counts
    assert json.loads((run / "manifest.json").read_text())["status"] == "degraded"
    assert verify(run).ok


def test_killing_a_handset_mid_audit(adb_port, tmp_path):
    home = tmp_path / "home"
    with LabThread(
        LabConfig(adb_port=adb_port, handsets=2, profile="miui-v5-2014-08-10", home=home, relay=False, consoles=False)
    ) as lt:
        hs2 = lt.lab.handsets[1]

        def progress(msg: str) -> None:
            if "send to an online receiver" in msg:
                lt.call(hs2.power_off())

        result = run_audit(tb_for_lab(lt.lab), AuditOptions(out=tmp_path / "runs", progress=progress, home=home))
    doc = result.report
    status = {c["id"]: c for c in doc["checks"]}
    assert status["ip-when-online"]["status"] == "NOT-TESTABLE"
    assert "hs2" in status["ip-when-online"]["reason"] and "answering" in status["ip-when-online"]["reason"]
    assert status["sms-fallback-when-offline"]["status"] in ("PASS", "NOT-TESTABLE")
    assert status["phone-numbers-encrypted"]["status"] == "PASS"
    assert any("hs2" in w for w in doc["warnings"])
    v = verify(result.run_dir)
    assert v.ok, v.to_json()
    files = {f["path"] for f in json.loads((result.run_dir / "manifest.json").read_text())["files"]}
    assert {
        "handsets/hs2/wire.pcapng",
        "handsets/hs2/trace/events.jsonl",
        "handsets/hs2/steps.json",
        "handsets/hs1/messages.json",
        "report.json",
        "junit.xml",
        "report.html",
    } <= files
    assert result.exit_status == 0


def test_bad_input_exit_codes(tmp_path):
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), vars=dict(os.environ))
    assert main(["audit", "--emulator", "--checks", "no-such-check"], env) == ExitStatus.USAGE
    assert "no-such-check" in env.stderr.getvalue()
    bad = tmp_path / "tb.yaml"
    bad.write_text("name: x\nhandsets:\n  - serial: s\n    label: a\n    sims: [{number: '12'}]\n")
    assert main(["audit", "--testbed", str(bad)], env) == ExitStatus.USAGE
    assert "number" in env.stderr.getvalue()
    gone = tmp_path / "gone.yaml"
    gone.write_text("name: gone\nhandsets:\n  - serial: 127.0.0.1:1\n    label: a\n    adb: 127.0.0.1:1\n")
    st = main(["audit", "--testbed", str(gone), "--out", str(tmp_path / "runs"), "--timeout", "3"], env)
    assert st == ExitStatus.NOT_RUNNABLE, env.stderr.getvalue()
    run = tmp_path / "runs" / "gone" / "latest"  # the run that could not run is still on record
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and verify(run).ok
    doc = json.loads((run / "report.json").read_text())
    assert doc["exit_status"] == 4 and all(c["status"] == "NOT-TESTABLE" for c in doc["checks"])
    assert any("could not run" in w for w in doc["warnings"])


def test_stopping_mid_audit_leaves_a_consistent_partial_run(adb_port, tmp_path):
    import threading

    home = tmp_path / "home"
    stop = threading.Event()
    with LabThread(
        LabConfig(adb_port=adb_port, handsets=2, profile="miui-v5-2014-07", home=home, relay=False, consoles=False)
    ) as lt:

        def progress(msg: str) -> None:
            if "call" in msg:  # as Ctrl-C would, once the protocol is under way
                stop.set()

        result = run_audit(
            tb_for_lab(lt.lab), AuditOptions(out=tmp_path / "runs", progress=progress, home=home, stop=stop)
        )
    doc = result.report
    assert result.exit_status == 130 and doc["run"]["interrupted"] is True and doc["run"]["complete"] is False
    assert [p["status"] for p in doc["phases"]][-1] == "interrupted"
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert status["opt-in-default"] == "FAIL"  # judged on what was gathered
    assert status["ip-when-online"] == "NOT-TESTABLE"  # its steps never ran
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    v = verify(result.run_dir)
    assert v.ok, v.to_json()
    assert {
        "report.json",
        "junit.xml",
        "report.html",
        "handsets/hs1/wire.pcapng",
        "handsets/hs1/trace/events.jsonl",
    } <= {f["path"] for f in manifest["files"]}


class _NoLabTestbed:
    name = "nolab"
    handsets: tuple = ()
    modem = None
    params: ClassVar[dict] = {}


def test_an_internal_error_still_leaves_a_consistent_failed_run(tmp_path, monkeypatch):
    """Our own bug mid-protocol: no traceback lost, no folder stuck at `running`: a report that
    says so (exit 4, a host fault of kind "audit"), the traceback in audit-error.txt, verify ok."""
    from hostctl.audit import run as audit_run

    def boom(self):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(audit_run.Audit, "_protocol", boom)
    said: list[str] = []
    result = run_audit(_NoLabTestbed(), AuditOptions(out=tmp_path / "runs", progress=said.append))
    doc = result.report
    assert result.exit_status == 4 and doc["exit_status"] == 4
    assert doc["run"]["status"] == "not-run" and validate_report(doc) == []
    assert [f["kind"] for f in doc["run"]["host_faults"]] == ["audit"]
    assert any("HOST FAULT (audit)" in s and "ZeroDivisionError: a bug" in s for s in said)
    assert "ZeroDivisionError" in (result.run_dir / "audit-error.txt").read_text()
    assert json.loads((result.run_dir / "manifest.json").read_text())["status"] == "failed"
    assert verify(result.run_dir).ok


# -- TLS decrypted with the trace's secrets (issue 16.3) -----------------------------------------
WIRE_FAILS_JULY = (
    "no-identifiers-before-opt-in",
    "presence-lookup-minimal",
    "phone-numbers-encrypted",
    "content-encrypted",
)


def _without_ssl_of(events: Path, client_random: str, out: Path) -> int:
    """``events`` with the ``ssl`` events of one TLS session removed (the session the agent's
    ``tls-secret`` events name by ``client_random``, on that process's SSL object): as if the SSL
    hooks had missed that one connection. Returns how many were removed."""
    current: dict[tuple, str] = {}
    kept, dropped = [], 0
    for line in events.read_text().splitlines(keepends=True):
        e = json.loads(line)
        key = (e.get("app"), e.get("pid"), e.get("ssl"))
        if e.get("kind") == "tls-secret" and e.get("ssl") is not None:
            current[key] = e["client_random"]
        if e.get("kind") == "ssl" and current.get(key) == client_random:
            dropped += 1
            continue
        kept.append(line)
    out.write_text("".join(kept))
    return dropped


def test_the_audit_decrypts_every_tls_flow_and_cross_checks_it(tmp_path):
    """The July build on the emulated lab: every TLS flow of each handset's capture is decrypted
    with the secrets its trace collected, the cross-check passes, the wire-based FAILs cite the
    decrypted wire (flow, record, offsets); and with the SSL events of one flow removed from the
    real run's events.jsonl, the cross-check FAILs naming that flow."""
    from hostctl.audit.checks import tls_plaintext_agrees
    from hostctl.audit.evidence import Evidence, HandsetEvidence
    from hostctl.audit.record import Status
    from hostctl.audit.run import decrypt_and_cross_check

    r = _audit_cli("--profile", "miui-v5-2014-07", "--out", str(tmp_path / "runs"), "--json", home=tmp_path / "home")
    assert r.returncode == ExitStatus.CHECK_FAILED, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert validate_report(doc) == []
    status = {c["id"]: c for c in doc["checks"]}
    assert status["tls-plaintext-agrees"]["status"] == "PASS", status["tls-plaintext-agrees"]
    flows = doc["tls_flows"]
    assert {f["handset"] for f in flows} == {"hs1", "hs2"}
    assert flows and all(f["decrypted"] and f["tls_status"] == "decrypted" for f in flows), flows
    assert all(f["cross_check"] == "agree" for f in flows if f["cross_check"] is not None)
    for cid in WIRE_FAILS_JULY:
        c = status[cid]
        assert c["status"] == "FAIL", c
        dec = [e for e in c["evidence"] if e.get("record") is not None]
        assert dec, f"{cid} cites no decrypted-wire evidence: {c['evidence'][:3]}"
        e = dec[0]
        assert e["file"].endswith("wire.pcapng") and e["flow"] is not None and e["offset"] is not None
        assert e["wire_offset"] is not None and "tls-decrypted" in e["text"]
        assert any(x["file"].endswith("events.jsonl") for x in c["evidence"]), "agent events alongside"
    run = tmp_path / "runs" / doc["run"]["testbed"] / "latest"
    html = (run / "report.html").read_text()
    assert 'id="tls-flows"' in html and f"{len(flows)} of {len(flows)} TLS flows decrypted" in html

    # the agent's SSL hooks removed from one flow: the cross-check reports it
    hs1 = run / "handsets" / "hs1"
    saved = json.loads((hs1 / "tls-crosscheck.json").read_text())
    victim = max(saved["cross_check"]["flows"], key=lambda f: f["directions"][0]["wire_bytes"])
    trace = tmp_path / "trace-missing-one"
    shutil.copytree(hs1 / "trace", trace)
    assert _without_ssl_of(hs1 / "trace" / "events.jsonl", victim["client_random"], trace / "events.jsonl") > 0
    tls = decrypt_and_cross_check(hs1 / "wire.pcapng", trace)
    bad = [f for f in tls["cross_check"]["flows"] if f["status"] != "agree"]
    assert [f["flow"] for f in bad] == [victim["flow"]] and bad[0]["status"] == "wire-only", bad
    ev = Evidence(
        handsets=[
            HandsetEvidence(
                label="hs1",
                capture_file="handsets/hs1/wire.pcapng",
                events_file="handsets/hs1/trace/events.jsonl",
                tls=tls,
            )
        ]
    )
    rec = tls_plaintext_agrees.evaluate(ev)
    assert rec.status is Status.FAIL
    assert {e.flow for e in rec.evidence} == {victim["flow"]}
    assert all(
        e.file == "handsets/hs1/wire.pcapng" and e.record is not None and e.wire_offset is not None
        for e in rec.evidence
    )
    assert f"flow {victim['flow']}" in rec.evidence[0].text and "wire-only" in rec.evidence[0].text
