"""The emulated shell never reaches the host: injection attempts, path escapes, SQL, fuzzing."""

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_shell_kit import MemoryIO, make_handset, run

from hostctl.emulator.shell import AndroidShell


@pytest.fixture
def setup(tmp_path: Path):
    sentinel_dir = tmp_path / "host"
    sentinel_dir.mkdir()
    sentinel = sentinel_dir / "x"
    sentinel.write_text("untouched")
    handset = make_handset(tmp_path)
    yield handset, sentinel_dir, sentinel
    handset.close()


def _host_state(d: Path) -> list[tuple[str, str]]:
    return sorted((p.name, p.read_text()) for p in d.iterdir())


def test_injection_attempts_stay_inside(setup) -> None:
    h, d, sentinel = setup
    x, pwned = str(sentinel), str(d / "pwned")
    attempts = [
        f"echo hi; rm -rf {x}",
        f"echo `rm -f {x}`",
        f"echo $(touch {pwned})",
        f"touch {pwned}",
        f"echo owned > {x}",
        f"rm -rf ../../../../../..{x}",
        f"cat ../../../../../../../..{x}",
        f"echo $(echo owned > {pwned}); ls {d}",
        f"sh -c 'rm -rf {d}'",
        f"content query --uri content://sms --where \"1=1; ATTACH DATABASE '{pwned}' AS p\"",
        f"content delete --uri content://sms --where \"_id IN (SELECT 1); ATTACH '{pwned}' AS p\"",
        f"uiautomator dump {pwned}",
        f"logcat -d > {pwned}",
    ]
    for cmd in attempts:
        r = run(h, cmd)
        assert isinstance(r.rc, int)
        assert _host_state(d) == [("x", "untouched")], cmd


def test_device_rm_rf_root_only_touches_writable_device_dirs(setup) -> None:
    h, d, _ = setup
    h.fs.host_path("/sdcard/keep").write_text("k")
    r = run(h, "rm -rf /*")
    assert r.rc == 1 and "Read-only file system" in r.err and "Permission denied" in r.err
    assert h.fs.host_path("/system/build.prop").exists()
    assert _host_state(d) == [("x", "untouched")]


def test_symlink_escape_is_refused(setup) -> None:
    h, d, sentinel = setup
    h.fs.host_path("/sdcard/link").symlink_to(d)  # planted from the host side
    r = run(h, "cat /sdcard/link/x; rm -rf /sdcard/link/x; echo owned > /sdcard/link/y")
    assert "untouched" not in r.out
    assert _host_state(d) == [("x", "untouched")]


_WORDS = st.sampled_from(
    [
        "echo",
        "cat",
        "ls",
        "rm",
        "-rf",
        "-r",
        "mkdir",
        "-p",
        "grep",
        "-c",
        "head",
        "-n",
        "tail",
        "wc",
        "getprop",
        "setprop",
        "settings",
        "get",
        "put",
        "secure",
        "service",
        "call",
        "iphonesubinfo",
        "i32",
        "s16",
        "1",
        "5",
        "99",
        "content",
        "query",
        "--uri",
        "content://sms",
        "--where",
        "--projection",
        "am",
        "start",
        "broadcast",
        "-a",
        "-n",
        "pm",
        "list",
        "packages",
        "input",
        "tap",
        "pidof",
        "ps",
        "-A",
        "id",
        "dumpsys",
        "uiautomator",
        "dump",
        "printf",
        "%s",
        "%d",
        "stat",
        "-c",
        "md5sum",
        "test",
        "[",
        "]",
        "/sdcard/x",
        "/data/local/tmp",
        "..",
        "/",
        "$?",
        "$(",
        ")",
        "`",
        "'",
        '"',
        ";",
        "&&",
        "||",
        "|",
        ">",
        ">>",
        "<",
        "2>&1",
        ">&2",
        "(",
        "{",
        "}",
        "!",
        "#",
        "\\",
        "$X",
        "X=1",
        "${",
        "exit",
        "cd",
        "true",
        "false",
        "sh",
        "-c",
        "logcat",
        "-d",
        "touch",
        "which",
        "x*",
        "*",
    ]
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(_WORDS, max_size=10), noise=st.text(max_size=12))
@example(words=["logcat", "#", "-d"], noise="")
def test_random_command_lines_only_return_codes(setup, words, noise) -> None:
    h, d, _ = setup
    line = " ".join(words) + noise
    if "sleep" in line:
        return
    # plain logcat streams until cancelled; always dump instead (a "-d" elsewhere in the line may
    # sit behind a comment, as in "logcat # -d")
    line = line.replace("logcat", "logcat -d")
    io = MemoryIO(b"stdin data\n")
    rc = asyncio.run(asyncio.wait_for(AndroidShell(h).run(line, io), timeout=5))
    assert isinstance(rc, int) and 0 <= rc <= 255
    # The interpreter's safety net logs any command that crashed: there must be none.
    crashes = [e.message for e in h.log_entries() if e.tag == "sh" and e.priority == "E"]
    assert crashes == [], line
    assert _host_state(d) == [("x", "untouched")]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
@example(text="\u00b2<")  # a Unicode digit before a redirection is a word, not an fd
def test_arbitrary_text_never_raises(setup, text) -> None:
    h, _, _ = setup
    if "logcat" in text or "sleep" in text:
        return
    io = MemoryIO()
    rc = asyncio.run(asyncio.wait_for(AndroidShell(h).run(text, io), timeout=5))
    assert 0 <= rc <= 255
    assert [e.message for e in h.log_entries() if e.tag == "sh" and e.priority == "E"] == []
