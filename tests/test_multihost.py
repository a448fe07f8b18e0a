"""A lab of several hosts (issue 18.12): two emulated labs on two adb servers ("two hosts"), one
testbed naming each handset's server, one handset pair per host. The audit over the whole
testbed, and the hw_tests sharded with pytest-xdist (one worker per pair), run, verify and give
the verdicts the firmware profile documents.

Frida follows one adb server per process (the first ANDROID_ADB_SERVER_PORT it saw): the other
host's handsets are reached through an ``adb forward`` on their own server
(``hostctl.trace.open_device(server=...)``), which is what fails without it ("Frida does not see
127.0.0.1:... through the adb server on port ...", and four checks NOT-TESTABLE).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hostctl.audit import AuditOptions, run_audit
from hostctl.emulator.lab import LabConfig, LabThread, ensure_adb_server, kill_adb_server
from hostctl.emulator.profiles import load_profile
from hostctl.evidence import verify
from hostctl.testbed import Testbed, load_testbed, write_testbed
from hostctl.testbed import testbed_for_lab as lab_testbed  # not collected as a test
from tests.conftest import free_port

PROFILE = "miui-v5-2014-08-10"
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_hosts(adb_port, tmp_path_factory):
    """Host A: a lab on this worker's adb server (the one Frida follows); host B: a lab on a
    second adb server. One home, as `hostctl emulator up` on one machine would share."""
    home = tmp_path_factory.mktemp("multihost")
    port_b = free_port()
    ensure_adb_server(port_b)
    labs = []
    try:
        for port in (adb_port, port_b):
            lt = LabThread(
                LabConfig(
                    adb_port=port, handsets=2, profile=PROFILE, home=home, modem=False, relay=False, consoles=False
                )
            )
            lt.start()
            labs.append(lt)
        yield home, labs, _combined(labs)
    finally:
        for lt in labs:
            lt.stop()
        kill_adb_server(port_b)


def _combined(labs: list[LabThread]) -> Testbed:
    """The testbed a two-host lab writes by hand: each host's handsets with their own adb server,
    labels made unique (a-hs1, a-hs2, b-hs1, b-hs2), so the pairs are a-hs1+a-hs2 and b-hs1+b-hs2."""
    beds = [lab_testbed(lt.lab) for lt in labs]
    handsets = tuple(
        dataclasses.replace(h, label=f"{host}-{h.label}") for host, bed in zip("ab", beds) for h in bed.handsets
    )
    return dataclasses.replace(beds[0], name="two-hosts", handsets=handsets)


def test_the_testbed_names_two_adb_servers(two_hosts):
    _, labs, tb = two_hosts
    assert [str(h.adb) for h in tb.handsets] == [f"127.0.0.1:{lt.lab.adb_port}" for lt in labs for _ in range(2)]
    assert len({h.adb for h in tb.handsets}) == 2


def test_an_audit_over_two_hosts_gives_the_documented_verdicts(two_hosts, tmp_path):
    home, _, tb = two_hosts
    result = run_audit(tb, AuditOptions(out=tmp_path / "runs", checks=None, profile=PROFILE, home=home))
    expected = dict(load_profile(PROFILE).audit_expectations)
    verdicts = {c["id"]: c["status"] for c in result.report["checks"]}
    assert verdicts == {k: v for k, v in expected.items() if k in verdicts}
    assert len(verdicts) == len(expected)
    # every handset was traced, host B's too (without the forward: "Frida does not see ...")
    assert not [text for text in _strings(result.report) if "Frida does not see" in text]
    traced = {p.parent.parent.name for p in Path(result.run_dir).glob("handsets/*/trace/*") if p.stat().st_size}
    assert traced == {"a-hs1", "a-hs2", "b-hs1", "b-hs2"}
    assert verify(result.run_dir).ok


def test_hw_tests_shard_one_worker_per_pair_across_two_hosts(two_hosts, tmp_path, adb_port):
    home, labs, tb = two_hosts
    path = write_testbed(tb, tmp_path / "two-hosts.yaml")
    assert load_testbed(path).handsets == tb.handsets  # loads back as written
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(adb_port), HOSTCTL_HOME=str(home))
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-v",
            str(ROOT / "hw_tests"),
            "--testbed",
            str(path),
            "--lock-dir",
            str(tmp_path / "locks"),
            "--evidence-dir",
            str(tmp_path / "evidence"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    workers: dict[str, set[str]] = {}
    for worker, pair in re.findall(r"\[(gw\d+)\] \[\s*\d+%\] PASSED \S+test_check\[([ab]-hs1\+[ab]-hs2)-", proc.stdout):
        workers.setdefault(pair, set()).add(worker)
    assert set(workers) == {"a-hs1+a-hs2", "b-hs1+b-hs2"}, proc.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values())  # each pair on one worker
    assert workers["a-hs1+a-hs2"] != workers["b-hs1+b-hs2"]  # and the two pairs on two
    runs = [
        r
        for r in sorted((tmp_path / "evidence").glob("*/audit-*/two-hosts/*/manifest.json"))
        if r.parent.name != "latest"
    ]
    assert len(runs) == 2 and all(verify(r.parent).ok for r in runs)


def _strings(doc):
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for value in doc.values():
            yield from _strings(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _strings(value)
