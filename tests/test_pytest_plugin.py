"""The pytest plugin (hostctl.pytest_plugin), hw_tests' check tests, and the profiles'
audit_expectations: pytest runs inside pytest (pytester), against testbed files, a fake audit and,
once, an emulated lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hostctl.emulator.lab import adb_server_running
from hostctl.emulator.profiles import ProfileError, load_profile
from hostctl.report import CHECK_IDS, STATUSES
from tests.conftest import wait_for

pytest_plugins = ["pytester"]

HW_TESTS = Path(__file__).resolve().parent.parent / "hw_tests"


def handset_yaml(n: int, **extra: str) -> str:
    lines = [
        f"  - serial: serial{n}",
        f"    label: hs{n}",
        "    adb: 127.0.0.1:5999",
        f'    sims: [{{number: "+86138000000{n:02d}"}}]',
    ]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines)


def make_testbed(
    pytester: pytest.Pytester, handsets: int = 2, *, modem: bool = True, emulator: str | None = None, **extra: str
) -> Path:
    text = "name: rack-a\nhandsets:\n" + "\n".join(handset_yaml(i + 1, **extra) for i in range(handsets)) + "\n"
    if modem:
        text += 'modem: {port: "loop://", number: "+8613900000000"}\n'
    if emulator:
        text += f"emulator: {{adb_port: 5999, profile: {emulator}}}\n"
    return pytester.makefile(".yaml", lab=text)


# --- options ----------------------------------------------------------------------------------


def test_without_a_testbed_tests_that_need_one_skip_and_others_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_needs(testbed): pass
        def test_pair(handsets): pass
        def test_free(evidence_dir): assert evidence_dir.is_dir()
    """)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED * no --testbed or --emulator-profile given"] * 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--testbed", "lab.yaml", "--emulator-profile", "miui-v5-2014-07"],
            "give --testbed FILE or --emulator-profile NAME, not both",
        ),
        (["--testbed-name", "rack-a"], "--testbed-name needs --testbed FILE"),
        (["--testbed", "nope.yaml"], "--testbed: */nope.yaml: no such testbed file"),
        (
            ["--testbed", "bad.yaml"],
            "--testbed: */bad.yaml:4: handsets[[]0].lable: unknown key; did you mean 'label'?*",
        ),
        (["--emulator-profile", "miui-v5-2014-7"], "--emulator-profile miui-v5-2014-7: *no such profile*"),
        (["--testbed", "lab.yaml", "--testbed-name", "desk"], "--testbed: *has no testbed named 'desk'*"),
    ],
    ids=["both", "name-alone", "no-file", "bad-key", "no-profile", "no-such-name"],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    make_testbed(pytester)
    pytester.makefile(".yaml", bad="name: rack-b\nhandsets:\n  - serial: s1\n    lable: hs1\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_testbed_file_fixtures(pytester: pytest.Pytester) -> None:
    make_testbed(pytester, frida="{}")
    pytester.makepyfile("""
        from hostctl.device import AdbAddress, Handset

        def test_bed(testbed, handsets, handset, handset_pair, profile_expectations, evidence_dir, evidence_root):
            assert testbed.name == "rack-a" and testbed.labels == ["hs1", "hs2"]
            assert list(handsets) == ["hs1", "hs2"]
            assert isinstance(handsets["hs1"], Handset)
            assert handsets["hs2"].server == AdbAddress("127.0.0.1", 5999)
            assert handset("serial2").serial == "serial2" and handset("hs1").serial == "serial1"
            assert handset_pair.id == "hs1+hs2" and handset_pair.testbed.modem == testbed.modem
            assert profile_expectations is None           # real handsets: the claims must hold
            assert evidence_dir.is_dir() and evidence_dir.parent == evidence_root
            (evidence_dir / "x").write_text("1")

        def test_other(evidence_dir):
            assert not (evidence_dir / "x").exists()

        def test_unknown_label(handset):
            handset("hs9")
    """)
    result = pytester.runpytest("--testbed", "lab.yaml", "--evidence-dir", "ev", "--lock-dir", "locks")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*testbed 'rack-a' has no handset labelled 'hs9' (labels: hs1, hs2)*"])
    (stamp,) = (pytester.path / "ev").iterdir()
    assert sorted(p.name for p in stamp.iterdir()) == [
        "test_testbed_file_fixtures.py_test_bed",
        "test_testbed_file_fixtures.py_test_other",
    ]
    locks = sorted(p.name.rsplit("-", 1)[0] for p in (pytester.path / "locks").iterdir())
    assert locks == ["adb-127.0.0.1-5999-serial1", "adb-127.0.0.1-5999-serial2"]


def test_requires_skips_say_what_the_testbed_lacks(pytester: pytest.Pytester) -> None:
    make_testbed(pytester, handsets=1, modem=False, capture="none")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires(handsets=2, modem=True, relay=True, frida=True, capture=True)
        def test_everything(): pass

        @pytest.mark.requires(handsets=1)
        def test_one(testbed): pass

        @pytest.mark.requires(modems=1)
        def test_typo(): pass

        def test_no_modem(peer_modem): pass
    """)
    result = pytester.runpytest("--testbed", "lab.yaml", "-rs")
    result.assert_outcomes(passed=1, skipped=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.requires: 'modems' not understood (keywords: handsets, modem, relay, frida, capture, root)",
            "SKIPPED * testbed 'rack-a' lacks: 2 handsets (it has 1: hs1); a modem (no `modem:` entry); "
            "a relay (no `relay:` entry); a relay channel for hs1 (no `relay_channel:`); "
            "frida on hs1 (no `frida:` entry); a capture source for hs1 (capture: none)",
            "SKIPPED * testbed 'rack-a' has no modem (no `modem:` entry)",
        ]
    )


def test_pairs_parametrise_and_group_tests(pytester: pytest.Pytester) -> None:
    make_testbed(pytester, handsets=4)
    pytester.makepyfile("""
        import os
        import pytest

        @pytest.fixture(scope="session")
        def log(pytestconfig):
            return pytestconfig.rootpath / "log.txt"

        @pytest.mark.parametrize("n", range(3))
        def test_drive(handsets, handset_pair, n, log):
            with open(log, "a") as fh:
                fh.write(f"{handset_pair.id} {os.environ.get('PYTEST_XDIST_WORKER')} {','.join(handsets)}\\n")

        def test_bed_only(testbed): pass
    """)
    items, _ = pytester.inline_genitems("--testbed", "lab.yaml")
    ids = {item.name: [m.args[0] for m in item.iter_markers("xdist_group")] for item in items}
    assert ids["test_drive[hs1+hs2-0]"] == ["hostctl:rack-a:hs1+hs2"]
    assert ids["test_drive[hs3+hs4-2]"] == ["hostctl:rack-a:hs3+hs4"]
    assert ids["test_bed_only"] == []  # drives no pair: free to go anywhere

    result = pytester.runpytest_subprocess(
        "--testbed", "lab.yaml", "-n", "2", "--dist", "loadgroup", "--lock-dir", "locks"
    )
    result.assert_outcomes(passed=7)
    lines = (pytester.path / "log.txt").read_text().split("\n")
    lines = [line.split() for line in lines if line]
    assert sorted(pair for pair, _, _ in lines) == ["hs1+hs2"] * 3 + ["hs3+hs4"] * 3
    assert {pair: hs for pair, _, hs in lines} == {"hs1+hs2": "hs1,hs2", "hs3+hs4": "hs3,hs4"}
    for pair in ("hs1+hs2", "hs3+hs4"):  # one worker per pair
        assert len({worker for p, worker, _ in lines if p == pair}) == 1, lines


# --- the handset lock across processes --------------------------------------------------------


HOLDER = """
    import os, time
    from pathlib import Path

    def test_hold(handset):
        handset("hs1")
        Path("held").write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not Path("release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
"""


def test_a_second_process_waits_for_the_handset_then_times_out_naming_the_holder(pytester: pytest.Pytester) -> None:
    make_testbed(pytester)
    pytester.makepyfile(
        test_holder=HOLDER,
        test_waiter="""
        import time
        from pathlib import Path

        def test_wait(handsets):
            Path("got").write_text(str(time.time()))
    """,
    )
    args = ["--testbed", "lab.yaml", "--lock-dir", str(pytester.path / "locks"), "-p", "no:cacheprovider"]
    holder = subprocess.Popen(
        [sys.executable, "-m", "pytest", "test_holder.py", *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: (pytester.path / "held").exists(), timeout=30)
        pid = (pytester.path / "held").read_text()

        started = time.monotonic()
        timed_out = pytester.runpytest_subprocess("test_waiter.py", *args, "--lock-timeout", "0.5")
        assert time.monotonic() - started >= 0.5
        timed_out.assert_outcomes(errors=1)
        timed_out.stdout.fnmatch_lines(
            [
                f"*handset hs1 (serial1 on adb server 127.0.0.1:5999) is in use by pid {pid} on *, running "
                "test_holder.py::test_hold, since *; waited 0.5 s for it (lock file */locks/adb-127.0.0.1-5999-serial1-"
                "*.lock; --lock-timeout sets the wait)"
            ]
        )
        assert not (pytester.path / "got").exists()

        waiter = subprocess.Popen(
            [sys.executable, "-m", "pytest", "test_waiter.py", *args, "--lock-timeout", "60"],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.5)
        released = time.time()
        (pytester.path / "release").write_text("")
        out, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, out.decode()
        assert float((pytester.path / "got").read_text()) >= released  # it waited for the holder
    finally:
        (pytester.path / "release").write_text("")
        holder.communicate(timeout=60)
    assert holder.returncode == 0


def test_locks_are_reentrant_within_a_process(tmp_path: Path) -> None:
    from hostctl.pytest_plugin import EquipmentLocks, LockKey, read_holder

    locks = EquipmentLocks(tmp_path, timeout=0.2)
    key = LockKey("adb-x.lock", "handset x")
    with locks.hold([key], "outer"):
        with locks.hold([key], "inner"):  # a session fixture's lock, asked for again
            assert read_holder(tmp_path / "adb-x.lock")["test"] == "outer"
        assert read_holder(tmp_path / "adb-x.lock")["pid"] == os.getpid()
    assert read_holder(tmp_path / "adb-x.lock") is None  # released, and nobody named


# --- markers in JUnit XML ---------------------------------------------------------------------


def test_junit_xml_carries_the_check_ids(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.check("phone-numbers-encrypted")
        def test_numbers(): pass

        @pytest.mark.check("opt-in-default")
        def test_opt_in(): pytest.skip("not today")

        @pytest.mark.check("phone-number-encrypted")
        def test_typo(): pass
    """)
    result = pytester.runpytest("--junitxml", "junit.xml")
    result.assert_outcomes(passed=1, skipped=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.check('phone-number-encrypted'): not an audit check id; "
            "did you mean 'phone-numbers-encrypted'?*"
        ]
    )
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    props = {case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")] for case in cases}
    assert props["test_numbers"] == [("check_id", "phone-numbers-encrypted")]
    assert props["test_opt_in"] == [("check_id", "opt-in-default")]


# --- hw_tests, with a fake audit --------------------------------------------------------------


FAKE_AUDIT = """
import json, sys, types
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass
class AuditOptions:
    out: Path
    checks: object = None


@dataclass
class AuditResult:
    report: dict
    run_dir: Path
    exit_status: int


def run_audit(testbed, options):
    if (HERE / "cannot-start").exists():
        from hostctl.errors import HostctlError
        raise HostctlError("no handset answered")
    with open(HERE / "calls.txt", "a") as fh:
        fh.write(json.dumps([testbed.name, testbed.labels, str(options.out), options.checks]) + "\\n")
    checks = [{"id": cid, "status": status, "reason": f"because {cid}", "warnings": [],
               "evidence": [{"file": "handsets/hs1/wire.pcapng", "flow": 3, "offset": 12, "text": "phone=+86..."}]
                           if status == "FAIL" else []}
              for cid, status in json.loads((HERE / "verdicts.json").read_text()).items()]
    return AuditResult({"checks": checks}, options.out / "rack-a" / "20250101T000000Z", 1)


fake = types.ModuleType("hostctl.audit")
fake.AuditOptions, fake.AuditResult, fake.run_audit = AuditOptions, AuditResult, run_audit
_saved = sys.modules.get("hostctl.audit")
sys.modules["hostctl.audit"] = fake


def pytest_unconfigure(config):
    if _saved is None:
        sys.modules.pop("hostctl.audit", None)
    else:
        sys.modules["hostctl.audit"] = _saved
"""


def hw_tests_with_fake_audit(pytester: pytest.Pytester, verdicts: dict[str, str]) -> None:
    pytester.makeconftest(FAKE_AUDIT)
    # under another name: hw_tests' own test_checks may be imported in this process already
    pytester.makepyfile(test_hw_checks=(HW_TESTS / "test_checks.py").read_text())
    (pytester.path / "verdicts.json").write_text(json.dumps(verdicts))


def test_hw_tests_on_real_handsets_assert_pass_and_skip_what_cannot_be_tested(pytester: pytest.Pytester) -> None:
    verdicts = dict.fromkeys(CHECK_IDS, "PASS") | {"phone-numbers-encrypted": "FAIL", "no-retention": "NOT-TESTABLE"}
    hw_tests_with_fake_audit(pytester, verdicts)
    make_testbed(pytester)
    result = pytester.runpytest("--testbed", "lab.yaml", "--lock-dir", "locks", "--junitxml", "junit.xml", "-rs")
    result.assert_outcomes(passed=len(CHECK_IDS) - 2, failed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "E * AssertionError: phone-numbers-encrypted FAIL: No phone number reaches Cloud Messaging servers readable*",
        "E * reason: because phone-numbers-encrypted",
        "E * evidence: file handsets/hs1/wire.pcapng, flow 3, offset 12: phone=+86...",
        "E * run folder: */audit-hs1_hs2/rack-a/20250101T000000Z",
        "SKIPPED * no-retention: NOT-TESTABLE on this testbed: because no-retention",
    ])
    calls = [json.loads(line) for line in (pytester.path / "calls.txt").read_text().splitlines()]
    assert len(calls) == 1  # one audit for the whole session
    assert calls[0][:2] == ["rack-a", ["hs1", "hs2"]] and calls[0][3] is None
    root = ET.parse(pytester.path / "junit.xml").getroot()
    assert sorted(p.get("value") for p in root.iter("property") if p.get("name") == "check_id") == sorted(CHECK_IDS)


def test_hw_tests_on_an_emulated_testbed_assert_the_profiles_verdicts(pytester: pytest.Pytester) -> None:
    expected = load_profile("miui-v5-2014-07").audit_expectations
    hw_tests_with_fake_audit(pytester, expected)
    make_testbed(pytester, emulator="miui-v5-2014-07")
    pytester.runpytest("--testbed", "lab.yaml", "--lock-dir", "locks").assert_outcomes(passed=len(CHECK_IDS))

    # a check that can never fail: it passes where the July build documents a FAIL
    (pytester.path / "verdicts.json").write_text(json.dumps(expected | {"phone-numbers-encrypted": "PASS"}))
    result = pytester.runpytest("--testbed", "lab.yaml", "--lock-dir", "locks")
    result.assert_outcomes(passed=len(CHECK_IDS) - 1, failed=1)
    result.stdout.fnmatch_lines(["E * AssertionError: phone-numbers-encrypted: the profile documents FAIL, "
                                 "the audit found PASS: *"])

    # a check the audit left out of its report
    (pytester.path / "verdicts.json").write_text(json.dumps({k: v for k, v in expected.items() if k != "no-retention"}))
    result = pytester.runpytest("--testbed", "lab.yaml", "--lock-dir", "locks")
    result.assert_outcomes(passed=len(CHECK_IDS) - 1, failed=1)
    result.stdout.fnmatch_lines(["*the audit's report has no verdict for no-retention (it has: opt-in-default, *"])


def test_hw_tests_say_once_why_the_audit_could_not_run(pytester: pytest.Pytester) -> None:
    hw_tests_with_fake_audit(pytester, {})
    (pytester.path / "cannot-start").write_text("")
    make_testbed(pytester)
    result = pytester.runpytest("--testbed", "lab.yaml", "--lock-dir", "locks")
    result.assert_outcomes(errors=len(CHECK_IDS))
    result.stdout.fnmatch_lines(["*the audit of rack-a (hs1+hs2) could not run: no handset answered"])


# --- the profiles' audit_expectations ---------------------------------------------------------


def test_shipped_audit_profiles_document_every_check() -> None:
    july, august = load_profile("miui-v5-2014-07"), load_profile("miui-v5-2014-08-10")
    assert set(july.audit_expectations) == set(august.audit_expectations) == set(CHECK_IDS)
    assert set(august.audit_expectations.values()) == {"PASS"}
    assert {k for k, v in july.audit_expectations.items() if v == "FAIL"} == {
        "opt-in-default",
        "no-identifiers-before-opt-in",
        "presence-lookup-minimal",
        "phone-numbers-encrypted",
        "content-encrypted",
    }


def _profile(tmp_path: Path, body: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "opt-in-defualt: PASS",
            "audit_expectations.opt-in-defualt: not an audit check id; did you mean 'opt-in-default'?",
        ),
        (
            "opt-in-default: pass",
            "audit_expectations.opt-in-default: expected one of PASS, FAIL, NOT-TESTABLE, got 'pass'",
        ),
    ],
)
def test_audit_expectations_are_validated(tmp_path: Path, entry: str, message: str) -> None:
    path = _profile(
        tmp_path,
        f"""\
        extends: miui-v5-2014-08-10
        name: custom
        audit_expectations:
          {entry}
    """,
    )
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value).startswith(f"profile p.yaml: {message}")


def test_audit_expectations_follow_the_behaviour_they_describe(tmp_path: Path) -> None:
    same_traffic = load_profile(_profile(tmp_path, "extends: miui-v5-2014-07\nname: variant\n"))
    assert same_traffic.audit_expectations == load_profile("miui-v5-2014-07").audit_expectations
    own_traffic = load_profile(_profile(tmp_path, "extends: miui-v5-2014-07\nname: quiet\nbehaviour: {}\n", "q.yaml"))
    assert own_traffic.audit_expectations == {}  # July's verdicts were about July's traffic
    listed = load_profile(
        _profile(
            tmp_path,
            """\
        extends: miui-v5-2014-08-10
        name: leaky
        audit_expectations: {no-identifiers-before-opt-in: FAIL}
    """,
            "l.yaml",
        )
    )
    assert listed.audit_expectations == {"no-identifiers-before-opt-in": "FAIL"}  # replaced whole
    assert all(v in STATUSES for v in listed.audit_expectations.values())


# --- an emulated lab for the session (slow) ---------------------------------------------------


@pytest.mark.slow
def test_emulator_profile_boots_a_lab_for_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import json, os
        from pathlib import Path
        import pytest

        @pytest.mark.requires(handsets=2, modem=True, frida=True, capture=True)
        def test_lab(testbed, handsets, peer_modem, profile_expectations, handset_pair):
            out = {"name": testbed.name, "labels": testbed.labels, "serials": [h.serial for h in testbed],
                   "port": os.environ["ANDROID_ADB_SERVER_PORT"], "pair": handset_pair.id,
                   "miui": {label: h.shell("getprop ro.miui.ui.version.name").output.strip()
                            for label, h in handsets.items()},
                   "modem": peer_modem.identify().imei, "modem_spec": testbed.modem.imei,
                   "expectations": profile_expectations}
            Path("lab.json").write_text(json.dumps(out))
    """)
    result = pytester.runpytest_subprocess(
        "--emulator-profile", "miui-v5-2014-07", "--lock-dir", "locks", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    lab = json.loads((pytester.path / "lab.json").read_text())
    assert lab["name"] == "emulator-miui-v5-2014-07" and lab["labels"] == ["hs1", "hs2"] and lab["pair"] == "hs1+hs2"
    assert all(s.startswith("127.0.0.1:") for s in lab["serials"])
    assert lab["miui"] == {"hs1": "V5", "hs2": "V5"}
    assert lab["modem"] == lab["modem_spec"]
    assert lab["expectations"] == load_profile("miui-v5-2014-07").audit_expectations
    assert lab["port"] != os.environ.get("ANDROID_ADB_SERVER_PORT")  # its own adb server...
    assert not adb_server_running(int(lab["port"]))  # ...killed by port at the end
