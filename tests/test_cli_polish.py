"""The CLI's edges: a closed pipe, the ``--json`` error document of every command that can fail,
audit summaries wrapped (never cut) to the terminal, usage errors for contradictory options, the
relay's channel, ``emulator up --detach``'s progress and the hint for a stopped emulated lab."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.commands.audit import _width, wrap_summary
from hostctl.emulator.lab import free_loopback_port, kill_adb_server
from hostctl.report import summary_table

ERROR_KEYS = {"type", "message", "exit_status"}


def cli(*argv: str, **env_over: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {k: v for k, v in os.environ.items() if k not in ("ANDROID_SERIAL", "COLUMNS")}
    env.update(env_over)
    status = main(list(argv), Environment(stdout=out, stderr=err, vars=env))
    return int(status), out.getvalue(), err.getvalue()


# --- a closed pipe -------------------------------------------------------------------------------


def test_a_reader_that_went_away_ends_the_command_quietly() -> None:
    """`hostctl --help | head -0`: the reader closes before hostctl writes. No traceback, exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "hostctl", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has even started
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and err == ""


def test_head_dash_one_through_a_shell_exits_zero() -> None:
    r = subprocess.run(
        f"set -o pipefail; {sys.executable} -m hostctl audit --help | head -1",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: hostctl audit") and r.stderr == ""


def test_broken_pipe_in_process_is_exit_zero() -> None:
    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    err = io.StringIO()
    assert main(["--help"], Environment(stdout=Closed(), stderr=err, vars={})) == ExitStatus.OK
    assert err.getvalue() == ""


# --- --json failures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dead_adb() -> str:
    """An adb address where nothing listens (connection refused at once)."""
    return f"127.0.0.1:{free_loopback_port()}"


def _error_doc(out: str, status: int) -> dict:
    doc = json.loads(out)  # exactly one JSON document on stdout
    assert set(doc["error"]) >= ERROR_KEYS, doc
    assert doc["error"]["exit_status"] == status and doc["error"]["message"]
    return doc


@pytest.mark.parametrize(
    "argv",
    [
        ["devices"],
        ["info"],
        ["identity"],
        ["identity", "--all"],
        ["messages"],
        ["presence", "+8613800000000"],
        ["cm", "status"],
        ["send", "--to", "+8613800000000", "--text", "x"],
        ["trace", "--out", "{tmp}/trace"],
        ["capture", "--out", "{tmp}/c.pcap"],
    ],
)
def test_device_commands_print_a_json_error_when_no_adb_server_answers(argv, dead_adb, tmp_path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    st, out, err = cli("--adb", dead_adb, *argv, "--json")
    assert st == ExitStatus.NOT_RUNNABLE, err
    doc = _error_doc(out, st)
    assert doc["error"]["type"] == "AdbServerError" and dead_adb in doc["error"]["message"]
    assert "no adb server answering" in err and "Traceback" not in err


def test_identity_failure_keeps_its_attempts_beside_the_error(dead_adb) -> None:
    st, out, _ = cli("--adb", dead_adb, "identity", "--all", "--json")
    doc = _error_doc(out, st)
    assert doc["handsets"] == [] and doc["errors"] and doc["errors"][0]["server"] == dead_adb


@pytest.mark.parametrize(
    "argv, status",
    [
        (["modem", "info", "--port", "/nonexistent/tty"], ExitStatus.NOT_RUNNABLE),
        (["modem", "inbox", "--port", "/nonexistent/tty"], ExitStatus.NOT_RUNNABLE),
        (["modem", "info"], ExitStatus.USAGE),  # no --port, no $HOSTCTL_MODEM_PORT
        (["relay", "on", "--port", "/nonexistent/tty", "--channel", "1"], ExitStatus.NOT_RUNNABLE),
        (["relay", "on", "--port", "loop://", "--channel", "0"], ExitStatus.USAGE),
        (["console", "record", "--port", "/nonexistent/tty", "--out", "{tmp}/c.log"], ExitStatus.NOT_RUNNABLE),
        (["wire-check", "{tmp}/missing.pcap", "--imei", "864804021234562"], ExitStatus.ERROR),
        (["wire-check", "{tmp}/missing.pcap"], ExitStatus.USAGE),  # nothing to look for
        (["audit", "--testbed", "{tmp}/missing.yaml"], ExitStatus.USAGE),
        (["audit", "--emulator", "--checks", "no-such-check"], ExitStatus.USAGE),
        (["emulator", "status"], ExitStatus.NOT_RUNNABLE),
        (["emulator", "reset", "hs1"], ExitStatus.NOT_RUNNABLE),
        (["info", "--timeout", "-1"], ExitStatus.USAGE),  # argparse's own usage error
    ],
)
def test_other_commands_print_a_json_error(argv, status, tmp_path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    env = {"HOSTCTL_HOME": str(tmp_path / "home"), "ANDROID_ADB_SERVER_PORT": str(free_loopback_port())}
    for var in ("HOSTCTL_MODEM_PORT", "HOSTCTL_RELAY_PORT", "HOSTCTL_CONSOLE_PORT"):
        env[var] = ""
    st, out, err = cli(*argv, "--json", **env)
    assert st == status, err
    _error_doc(out, st)
    assert "Traceback" not in err and err.splitlines()[-1].startswith("hostctl")


def test_emulator_status_json_error_keeps_running_false(tmp_path) -> None:
    port = free_loopback_port()
    st, out, _ = cli("emulator", "status", "--json", HOSTCTL_HOME=str(tmp_path), ANDROID_ADB_SERVER_PORT=str(port))
    doc = _error_doc(out, st)
    assert doc["running"] is False and doc["adb_port"] == port and doc["handsets"] == []


def test_without_json_stdout_stays_empty_on_failure(dead_adb) -> None:
    st, out, err = cli("--adb", dead_adb, "info")
    assert st == ExitStatus.NOT_RUNNABLE and out == "" and "no adb server" in err


# --- usage ---------------------------------------------------------------------------------------


def test_serial_with_all_is_a_usage_error(dead_adb) -> None:
    st, out, err = cli("--adb", dead_adb, "identity", "-s", "abc", "--all")
    assert st == ExitStatus.USAGE and "--all" in err and "-s" in err and out == ""
    st, out, _ = cli("--adb", dead_adb, "identity", "-s", "abc", "--all", "--json")
    assert _error_doc(out, st)["error"]["type"] == "usage"


def test_relay_says_which_channel_it_chose(tmp_path) -> None:
    st, out, err = cli("relay", "on", "--port", "loop://", "--json")
    assert st == ExitStatus.OK, err
    assert "no --channel given, using channel 1" in err and json.loads(out)["channel"] == 1
    st, out, err = cli("relay", "on", "--port", "loop://", "--channel", "2", "--json")
    assert st == ExitStatus.OK and "--channel" not in err and json.loads(out)["channel"] == 2


# --- the audit's summary wraps to the terminal ---------------------------------------------------

LONG_REASON = (
    "a phone number reached Xiaomi hosts in-clear in the TLS plaintext of the presence look-up "
    "and of the account report, on both SIM slots, during the whole run"
)


def _report() -> dict:
    return {
        "run": {"testbed": "rack-a", "id": "20250131T091502Z"},
        "exit_status": 3,
        "checks": [
            {
                "id": "phone-numbers-encrypted",
                "status": "FAIL",
                "reason": LONG_REASON,
                "evidence": [
                    {
                        "file": "handsets/hs1/trace/events.jsonl",
                        "flow": 3,
                        "offset": 199,
                        "event": 216,
                        "text": "hs1 number0 in-clear as e164:ascii (tls-plaintext, out) to api.account.xiaomi.com",
                    }
                ],
                "warnings": [
                    "deterministic encryption: AES-CBC under a per-SIM key with a fixed IV, so one number "
                    "always gives one ciphertext (linkable)"
                ],
            },
            {"id": "no-retention", "status": "PASS", "reason": "the server's store holds no content"},
        ],
    }


@pytest.mark.parametrize("width", [72, 100, 200])
def test_audit_summary_wraps_to_the_width_and_loses_nothing(width) -> None:
    whole = summary_table(_report(), width=None)
    wrapped = wrap_summary(whole, width)
    assert all(len(line) <= width for line in wrapped.splitlines()), wrapped
    assert set(LONG_REASON.split()) <= set(wrapped.split())  # nothing cut
    assert "..." not in wrapped
    # a continuation line sits under the reason column
    column = next(line for line in wrapped.splitlines() if line.startswith("CHECK")).index("REASON")
    row = wrapped.splitlines().index(
        next(line for line in wrapped.splitlines() if line.startswith("phone-numbers-encrypted"))
    )
    following = wrapped.splitlines()[row + 1]
    assert following[:column].strip() == "" and following[column] != " "


def test_a_narrow_terminal_gets_a_hanging_indent() -> None:
    wrapped = wrap_summary(summary_table(_report(), width=None), 50)
    assert all(len(line) <= 50 for line in wrapped.splitlines()), wrapped
    assert set(LONG_REASON.split()) <= set(wrapped.split())


def test_summary_width_comes_from_columns_or_the_terminal() -> None:
    assert _width(Environment(stdout=io.StringIO(), vars={"COLUMNS": "123"})) == 123
    assert _width(Environment(stdout=io.StringIO(), vars={})) is None  # a pipe: whole lines
    long_line = wrap_summary(summary_table(_report(), width=None), None)
    assert LONG_REASON in long_line


# --- emulated labs -------------------------------------------------------------------------------


def test_stale_emulated_testbed_gets_the_emulator_up_hint(tmp_path) -> None:
    port = free_loopback_port()
    lab_dir = tmp_path / "home" / "labs" / str(port)
    lab_dir.mkdir(parents=True)
    testbed = tmp_path / "lab.yaml"
    testbed.write_text(
        textwrap.dedent(f"""\
        name: emulator-{port}
        handsets:
          - serial: 127.0.0.1:{port + 1}
            label: hs1
            adb: 127.0.0.1:{port}
            sims: [{{number: "+8613800000001"}}]
        emulator: {{adb_port: {port}, lab_dir: {lab_dir}, profile: miui-v5-2014-08-10}}
        """)
    )
    st, out, err = cli("audit", "--testbed", str(testbed), "--out", str(tmp_path / "runs"), "--json")
    assert st == ExitStatus.NOT_RUNNABLE, err
    assert "hostctl emulator up" in err and "adb start-server" not in err
    assert "hostctl emulator up" in _error_doc(out, st)["error"]["message"]

    # the same lab's port asked directly: the adb error says the lab stopped
    st, _, err = cli("--adb", f"127.0.0.1:{port}", "info", HOSTCTL_HOME=str(tmp_path / "home"))
    assert st == ExitStatus.NOT_RUNNABLE and "hostctl emulator up" in err


@pytest.mark.slow
def test_emulator_up_detach_shows_progress_on_stderr(tmp_path) -> None:
    port = free_loopback_port()
    env = {"ANDROID_ADB_SERVER_PORT": str(port), "HOSTCTL_HOME": str(tmp_path)}
    try:
        st, out, err = cli(
            "emulator",
            "up",
            "--detach",
            "--handsets",
            "1",
            "--no-apps",
            "--no-modem",
            "--no-relay",
            "--no-consoles",
            "--json",
            **env,
        )
        assert st == ExitStatus.OK, err
        assert json.loads(out)["adb_port"] == port  # stdout: only the result
        lines = err.splitlines()
        assert lines[0].startswith(f"hostctl: starting 1 emulated handset(s) on adb port {port} in the background")
        assert "log" in lines[0] and lines[-1].startswith("hostctl: lab ready after")
    finally:
        cli("emulator", "down", **env)
        kill_adb_server(port)


def test_demo_refuses_a_profile_it_does_not_know() -> None:
    st, out, err = cli("demo", "--profile", "miui-12-android-11", "--json")
    assert st == ExitStatus.USAGE and "the demo knows miui-v5-2014-07, miui-v5-2014-08-10" in err
    assert json.loads(out)["error"]["type"] == "usage"
