"""Evidence run folders (layout, latest link, manifest, verify, partial runs) and redaction."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime, timedelta

import pytest

from hostctl.evidence import MANIFEST, EvidenceError, Redactor, RunFolder, verify
from hostctl.testbed import parse_testbeds


class Clock:
    """A UTC clock the test moves by hand."""

    def __init__(self, start=datetime(2025, 1, 31, 9, 15, 2, tzinfo=UTC)):
        self.now = start

    def __call__(self):
        return self.now


def manifest(run):
    return json.loads((run.path / MANIFEST).read_text())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_run_folder_layout_and_latest_link(tmp_path):
    clock = Clock()
    run = RunFolder.create(tmp_path, "rack-a", clock=clock, handsets=["hs1", "hs2"])
    assert run.path == tmp_path / "rack-a" / "20250131T091502Z"
    assert run.run_id == "rack-a/20250131T091502Z"
    assert (run.path / "handsets" / "hs1").is_dir() and (run.path / "handsets" / "hs2").is_dir()
    latest = tmp_path / "rack-a" / "latest"
    assert latest.is_symlink() and os.readlink(latest) == "20250131T091502Z"  # relative: the tree moves
    doc = manifest(run)
    assert (doc["schema"], doc["schema_version"], doc["status"], doc["files"]) == ("hostctl.manifest", 1, "running", [])
    assert doc["started"] == "2025-01-31T09:15:02Z" and doc["handsets"] == ["hs1", "hs2"]

    again = RunFolder.create(tmp_path, "rack-a", clock=clock)  # the same second
    assert again.path.name == "20250131T091502Z-2" and os.readlink(latest) == "20250131T091502Z-2"
    clock.now += timedelta(minutes=1)
    third = RunFolder.create(tmp_path, "rack-a", clock=clock)
    assert os.readlink(latest) == third.path.name == "20250131T091602Z"
    assert latest.resolve() == third.path.resolve()
    # the link was swapped by rename: nothing but the runs and the link is left
    assert sorted(p.name for p in (tmp_path / "rack-a").iterdir()) == [
        "20250131T091502Z",
        "20250131T091502Z-2",
        "20250131T091602Z",
        "latest",
    ]
    with pytest.raises(EvidenceError, match="cannot name a folder"):
        RunFolder.create(tmp_path, "../escape")


def test_manifest_lists_every_file_with_size_hash_kind_and_handset(tmp_path):
    clock = Clock()
    run = RunFolder.create(tmp_path, "rack-a", clock=clock, handsets=["hs1"])
    run.add_file("handsets/hs1/logcat.txt", "I/MxActivateService: hello\n")
    run.add_file("report.json", b'{"checks": []}', kind="report")
    with run.open("handsets/hs2/capture.pcapng") as fh:  # a new handset folder joins
        fh.write(b"\x0a\x0d\x0d\x0a")
    (run.handset_dir("hs1") / "console-hs1.log").write_text("boot\n")  # written by a recorder
    run.record(run.path / "handsets" / "hs1" / "console-hs1.log", kind="console-log")
    clock.now += timedelta(seconds=3)
    run.write_manifest(phase="boot")
    doc = manifest(run)
    assert doc["files"] == [
        {
            "path": "handsets/hs1/console-hs1.log",
            "size": 5,
            "sha256": sha(b"boot\n"),
            "kind": "console-log",
            "handset": "hs1",
            "complete": True,
        },
        {
            "path": "handsets/hs1/logcat.txt",
            "size": 27,
            "sha256": sha(b"I/MxActivateService: hello\n"),
            "kind": "text",
            "handset": "hs1",
            "complete": True,
        },
        {
            "path": "handsets/hs2/capture.pcapng",
            "size": 4,
            "sha256": sha(b"\x0a\x0d\x0d\x0a"),
            "kind": "pcapng",
            "handset": "hs2",
            "complete": True,
        },
        {
            "path": "report.json",
            "size": 14,
            "sha256": sha(b'{"checks": []}'),
            "kind": "report",
            "handset": None,
            "complete": True,
        },
    ]
    assert doc["handsets"] == ["hs1", "hs2"] and doc["phase"] == "boot" and doc["updated"] == "2025-01-31T09:15:05Z"
    assert doc["sequence"] == 2 and doc["missing"] == []
    for bad in ("../outside.txt", "/etc/passwd", "manifest.json", "handsets/../../x", ""):
        with pytest.raises(EvidenceError):
            run.add_file(bad, "x")


def test_verify_finds_tampered_missing_and_unlisted_files(tmp_path):
    run = RunFolder.create(tmp_path, "rack-a", clock=Clock(), handsets=["hs1"])
    run.add_file("handsets/hs1/rows.json", '[{"_id": 1, "mx_status": 17}]')
    run.add_file("handsets/hs1/agent.jsonl", '{"hook": "SSL_write"}\n')
    run.add_file("report.json", "{}")
    run.close()
    result = verify(run.path)
    assert result.ok and result.checked == 3 and result.status == "complete"
    assert (result.missing, result.changed, result.unlisted) == ([], [], [])

    rows = run.path / "handsets" / "hs1" / "rows.json"
    rows.write_text(rows.read_text().replace("17", "16"))  # same size, other bytes
    (run.path / "report.json").unlink()
    (run.path / "handsets" / "hs1" / "extra.txt").write_text("planted")
    result = verify(run.path)
    assert not result.ok
    assert result.changed == ["handsets/hs1/rows.json"] and result.missing == ["report.json"]
    assert result.unlisted == ["handsets/hs1/extra.txt"]
    assert result.to_json()["ok"] is False
    with pytest.raises(EvidenceError, match="no manifest.json"):
        verify(tmp_path)


def test_an_exception_mid_run_leaves_a_consistent_partial_manifest(tmp_path):
    with (
        pytest.raises(RuntimeError, match="handset vanished"),
        RunFolder.create(tmp_path, "rack-a", clock=Clock(), handsets=["hs1", "hs2"]) as run,
    ):
        run.add_file("handsets/hs1/logcat.txt", "phase 1\n")
        run.write_manifest()  # after phase 1
        run.record("handsets/hs2/logcat.txt")  # expected, never written
        with run.open("handsets/hs1/capture.pcapng") as fh:
            fh.write(b"first packets")
            raise RuntimeError("handset vanished")
    doc = manifest(run)
    assert doc["status"] == "failed" and doc["error"] == "RuntimeError: handset vanished"
    files = {f["path"]: f for f in doc["files"]}
    assert files["handsets/hs1/capture.pcapng"]["complete"] is False  # cut short, but hashed
    assert files["handsets/hs1/capture.pcapng"]["sha256"] == sha(b"first packets")
    assert doc["missing"] == ["handsets/hs2/logcat.txt"]
    result = verify(run.path)
    assert result.changed == [] and result.unlisted == [] and result.missing == ["handsets/hs2/logcat.txt"]
    assert not [p for p in run.path.iterdir() if p.name.startswith(".tmp")]
    (run.path / "handsets" / "hs2" / "logcat.txt").write_text("late")  # after the last manifest
    result = verify(run.path)
    assert result.missing == [] and result.unlisted == ["handsets/hs2/logcat.txt"]  # there, but unhashed

    with pytest.raises(KeyboardInterrupt), RunFolder.create(tmp_path, "rack-a", clock=Clock()) as run:
        run.add_file("report.json", "{}")
        raise KeyboardInterrupt
    assert manifest(run)["status"] == "interrupted" and verify(run.path).ok


def test_a_manifest_written_while_a_file_is_open_is_consistent_then(tmp_path):
    run = RunFolder.create(tmp_path, "rack-a", clock=Clock())
    with run.open("handsets/hs1/logcat.txt", "w") as fh:
        fh.write("line 1\n")
        run.write_manifest()  # flushes the open file first
        assert verify(run.path).ok
        assert manifest(run)["files"][0]["complete"] is False
        fh.write("line 2\n")
    run.write_manifest()
    doc = manifest(run)
    assert doc["files"][0]["complete"] is True and doc["files"][0]["sha256"] == sha(b"line 1\nline 2\n")
    assert verify(run.path).ok


def test_a_failed_manifest_write_keeps_the_previous_one(tmp_path, monkeypatch):
    run = RunFolder.create(tmp_path, "rack-a", clock=Clock())
    run.add_file("a.txt", "a")
    run.write_manifest()
    before = (run.path / MANIFEST).read_bytes()
    run.add_file("b.txt", "b")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(EvidenceError, match="No space left"):
        run.write_manifest()
    monkeypatch.undo()
    assert (run.path / MANIFEST).read_bytes() == before  # never half a manifest
    assert not [p for p in run.path.iterdir() if p.name.startswith(".tmp")]
    v = verify(run.path)
    assert (v.missing, v.changed, v.unlisted) == ([], [], ["b.txt"])
    assert not v.ok  # b.txt was never hashed: the folder does not verify


def test_verify_fails_on_a_file_the_manifest_does_not_list(tmp_path):
    run = RunFolder.create(tmp_path, "rack-a", clock=Clock(), handsets=["hs1"])
    run.add_file("report.json", "{}")
    run.close()
    assert verify(run.path).ok
    (run.path / "handsets" / "hs1" / "wire.pcapng").write_bytes(b"unhashed capture of a crashed run")
    v = verify(run.path)
    assert not v.ok and v.unlisted == ["handsets/hs1/wire.pcapng"] and v.to_json()["ok"] is False


def test_run_folders_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        run = RunFolder.create(tmp_path / "runs", "rack-a", clock=Clock(), handsets=["hs1"])
        run.add_file("handsets/hs1/identity.json", '{"imei": "490154203237518"}')
        with run.open("handsets/hs1/trace/events.jsonl") as fh:
            fh.write(b"{}\n")
        os.makedirs(run.path / "handsets" / "hs1" / "tool", mode=0o755)  # a tool's own folder
        (run.path / "handsets" / "hs1" / "tool" / "out.txt").write_text("x")
        run.add_file("handsets/hs1/tool/out.txt")
        loose = run.path_for("handsets/hs1/wire.pcap")
        loose.write_bytes(b"written by tcpdump under umask 022")
        os.chmod(loose, 0o644)
        run.add_file("handsets/hs1/wire.pcap")
        run.close()
    finally:
        os.umask(old)
    dirs = [
        tmp_path / "runs",
        tmp_path / "runs" / "rack-a",
        run.path,
        run.path / "handsets",
        run.path / "handsets" / "hs1",
        run.path / "handsets" / "hs1" / "trace",
        run.path / "handsets" / "hs1" / "tool",
    ]
    assert {oct(d.stat().st_mode & 0o777) for d in dirs} == {"0o700"}
    files = [p for p in run.path.rglob("*") if p.is_file()]
    assert len(files) == 5
    assert {p.relative_to(run.path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files} == {
        p.relative_to(run.path).as_posix(): "0o600" for p in files
    }


def test_resume_continues_a_run(tmp_path):
    run = RunFolder.create(tmp_path, "rack-a", clock=Clock(), handsets=["hs1"])
    run.add_file("handsets/hs1/a.txt", "a")
    run.write_manifest()
    later = RunFolder.resume(run.path)
    later.add_file("handsets/hs1/b.txt", "b")
    later.close()
    doc = manifest(later)
    assert [f["path"] for f in doc["files"]] == ["handsets/hs1/a.txt", "handsets/hs1/b.txt"]
    assert doc["run_id"] == run.run_id and doc["sequence"] == 3 and verify(run.path).ok


# --- redaction -----------------------------------------------------------------------------------

TESTBED = """\
name: rack-a
handsets:
  - serial: 4d00c0ffee
    label: hs1
    adb: 5037
    sims:
      - {number: "+8613800000001", iccid: "89860012345678901238", imsi: "460001234567890", imei: "864804021234562"}
modem: {port: /dev/ttyUSB0, number: "+442079460123"}
"""


def test_redaction_leaves_no_digits_of_the_identifiers():
    tb = parse_testbeds(TESTBED)[0]
    red = Redactor.for_testbed(tb)
    text = "\n".join(
        [
            "sent to +8613800000001 and +86 138 0000 0001 and 8613800000001, dialled 008613800000001",
            "national 13800000001 / 138-0000-0001 / 013800000001; the peer is +44 20 7946 0123 (020 7946 0123)",
            "AT+CMGS PDU 0011000D91683108000000F10000AA0548656C6C6F  (semi-octets of the number)",
            "imei=864804021234562 imeisv=8648040212345601 imsi:460001234567890",
            "EF_ICCID 98680021436587092183 iccid=89860012345678901238F",
            "found sha1(imei) "
            + hashlib.sha1(b"864804021234562").hexdigest().upper()
            + " and md5(number) "
            + hashlib.md5(b"+8613800000001").hexdigest(),
            "pid=" + __import__("base64").b64encode(b"13800000001").decode(),
        ]
    )
    out = red.redact(text)
    ref_number = "[msisdn:" + hashlib.sha256(b"+8613800000001").hexdigest()[:8] + "]"
    assert out.count(ref_number) == 10
    assert "[imei:" + hashlib.sha256(b"864804021234562").hexdigest()[:8] + "]" in out
    assert "[iccid:" in out and "[imsi:" in out and "[msisdn:" + hashlib.sha256(b"+442079460123").hexdigest()[:8] in out
    # no identifier left, whatever its form: strip the references and separators, then no run of
    # 7 digits of any identifier (or of its semi-octet form) appears anywhere
    bare = re.sub(r"[\s.\-()]", "", re.sub(r"\[\w+:[0-9a-f]{8}\]", "|", out))
    values = [v for vs in tb.identifiers().values() for v in vs]
    for value in values:
        digits = value.lstrip("+")
        swapped = "".join(digits[i + 1 : i + 2] + digits[i] for i in range(0, len(digits), 2))
        for form in (digits, swapped):
            for i in range(len(form) - 6):
                assert form[i : i + 7] not in bare, (value, form[i : i + 7], out)
    assert "sha1(imei) [imei:" in out and "md5(number) [msisdn:" in out and "pid=[msisdn:" in out
    assert "PDU 0011000D91" + ref_number in out  # only the number's semi-octets went
    assert "AT+CMGS" in out and "(semi-octets of the number)" in out  # the rest is kept


def test_redaction_is_stable_keyed_and_structure_preserving():
    a = Redactor({"imei": ["864804021234562"], "number": ["+8613800000001"]})
    b = Redactor([("msisdn", "+8613800000001"), ("imei", "864804021234562")])
    line = "imei 864804021234562 from 13800000001"
    assert a.redact(line) == b.redact(line) == a(line)  # same value, same reference
    keyed = Redactor({"imei": ["864804021234562"]}, key=b"lab secret")
    assert keyed.reference("imei", "864804021234562") != a.reference("imei", "864804021234562")
    assert keyed.redact("imei 864804021234562") == "imei " + keyed.reference("imei", "864804021234562")
    doc = {
        "numbers": ["+8613800000001", 8613800000001],
        "13800000001": {"imei": 864804021234562, "n": 3.5, "ok": True, "count": 42},
    }
    red = a.redact_obj(doc)
    assert json.loads(json.dumps(red)) == red
    assert "8613800000001" not in json.dumps(red) and "864804021234562" not in json.dumps(red)
    assert red[a.reference("msisdn", "+8613800000001")]["count"] == 42  # other values untouched
    assert (
        a.redact_bytes(b"\xff+8613800000001\r\n")
        == b"\xff" + a.reference("msisdn", "+8613800000001").encode() + b"\r\n"
    )
    assert set(a.references.values()) == {"imei", "msisdn"}
    assert Redactor().redact("nothing 13800000001") == "nothing 13800000001"
