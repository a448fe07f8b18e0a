"""`hostctl modem info|send|inbox|watch` in-process against the lab's modem, and the modem in
`hostctl emulator status`."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import free_port


@pytest.fixture(scope="module")
def clab(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-modem-home")
    port = free_port()
    with LabThread(LabConfig(adb_port=port, handsets=1, home=home, with_apps=False, connect=False)) as lt:
        env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port), HOSTCTL_HOME=str(home))
        yield lt, env


def cli(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), Environment(stdout=out, stderr=err, vars=env))
    return status, out.getvalue(), err.getvalue()


def test_info_json_through_the_lab_shortcut_and_by_url(clab):
    lt, env = clab
    st, out, err = cli(env, "modem", "info", "--port", "lab", "--json")
    assert st == ExitStatus.OK, err
    info = json.loads(out)
    modem = lt.lab.modem_info()
    assert (info["imei"], info["imsi"], info["number"], info["sim"]) == (
        modem["imei"],
        modem["imsi"],
        modem["number"],
        "READY",
    )
    assert info["registration"]["registered"] is True
    st, out, _ = cli(env, "modem", "info", "--port", modem["url"])
    assert st == ExitStatus.OK and "manufacturer" in out and modem["imei"] in out


def test_emulator_status_json_includes_the_modem(clab):
    lt, env = clab
    st, out, err = cli(env, "emulator", "status", "--json")
    assert st == ExitStatus.OK, err
    modem = json.loads(out)["modem"]
    assert modem["pty"].startswith("/dev/pts/") and modem["url"].startswith("socket://127.0.0.1:")
    assert modem["number"] == lt.lab.modem_info()["number"] and modem["imsi"]
    st, out, _ = cli(env, "emulator", "status")
    assert f"modem: {modem['pty']}" in out


def test_send_with_report_and_the_handset_has_it(clab):
    lt, env = clab
    lh = lt.lab.handsets[0]
    st, out, err = cli(
        env, "modem", "send", "--port", "lab", "--report", "--json", lh.identity.sims[0].msisdn, "x" * 200
    )
    assert st == ExitStatus.OK, err
    result = json.loads(out)
    assert result["parts"] == 2 and result["delivered"] is True
    assert all(r["meaning"] == "received by the SME" for r in result["reports"])
    cols, rows = lh.handset.sms_query("content://sms/inbox")
    assert "x" * 200 in [r[cols.index("body")] for r in rows]


def test_inbox_lists_joined_messages_and_deletes(clab):
    lt, env = clab
    lh = lt.lab.handsets[0]
    lh.send_sms(lt.lab.modem_info()["number"], "inbox " * 40)
    st, out, err = cli(env, "modem", "inbox", "--port", "lab", "--json", "--delete")
    assert st == ExitStatus.OK, err
    msgs = json.loads(out)["messages"]
    assert ("inbox " * 40) in [m["text"] for m in msgs]
    st, out, _ = cli(env, "modem", "inbox", "--port", "lab", "--json")
    assert json.loads(out)["messages"] == []


def test_watch_prints_each_message_as_it_arrives(clab):
    lt, env = clab
    lh = lt.lab.handsets[0]
    timer = threading.Timer(0.5, lambda: lh.send_sms(lt.lab.modem_info()["number"], "watched"))
    timer.start()
    t0 = time.monotonic()
    st, out, err = cli(env, "modem", "watch", "--port", "lab", "--json", "--count", "1", "--duration", "20", "--delete")
    timer.join()
    assert st == ExitStatus.OK, err
    assert json.loads(out.strip())["text"] == "watched" and time.monotonic() - t0 < 10


def test_errors_are_exit_codes_not_tracebacks(clab, tmp_path):
    lt, env = clab
    st, _, err = cli(dict(env, HOSTCTL_MODEM_PORT=""), "modem", "info")
    assert st == ExitStatus.USAGE and "--port" in err
    st, _, err = cli(env, "modem", "info", "--port", "/dev/hostctl-missing")
    assert st == ExitStatus.NOT_RUNNABLE and "cannot open" in err
    st, _, err = cli(env, "modem", "send", "--port", "lab", "+8613999999999", "nobody")
    assert st == ExitStatus.ERROR and "+CMS ERROR 1: unassigned (unallocated) number" in err
    st, _, err = cli(env, "modem", "info", "--port", "loop://", "--timeout", "0.3")
    assert st == ExitStatus.TIMEOUT and "Traceback" not in err
    other = dict(env, HOSTCTL_HOME=str(tmp_path))
    st, _, err = cli(other, "modem", "info", "--port", "lab")
    assert st == ExitStatus.NOT_RUNNABLE and "no emulated lab" in err
