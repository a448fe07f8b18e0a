"""`hostctl cm status|on|off` and `hostctl presence` through the UI path, against emulated handsets
via the real adb: MIUI's own rows and strings, the activation consent, the compose hint."""

from __future__ import annotations

import io
import json
import os

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.cloud import parse_switches
from hostctl.device import ShellResult, dump_ui
from hostctl.emulator import screens
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.errors import CommandError
from tests.conftest import free_port


def cli(lt, *argv):
    out, err = io.StringIO(), io.StringIO()
    env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
    st = main(["--adb", f"127.0.0.1:{lt.config.adb_port}", *argv], Environment(stdout=out, stderr=err, vars=env))
    return st, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ota(tmp_path_factory):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            cloud=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path_factory.mktemp("ota"),
        )
    ) as lt:
        yield lt


def test_on_off_through_the_consent_verified_and_idempotent(ota):
    h = ota.lab.handsets[0].handset
    starts = []
    h.add_intent_listener(lambda i: starts.append(i.action) if i.component == screens.MX_SERVICE else None)
    st, out, err = cli(ota, "cm", "status", "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["enabled"] is False and doc["sources"]["setting"] == {"secure/cloud_messaging_on": "0"}

    st, out, err = cli(ota, "cm", "on", "--sim", "1", "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["enabled"] is True and doc["changed"] is True and doc["sources"]["ui"]["consent_shown"] is True
    (consent,) = doc["consent"]
    assert (consent["sim"], consent["kind"], consent["title"], consent["accepted"]) == (
        1,
        "dialog_title_mx_rcs",
        "免费发送短信",
        "现在开启",
    )
    assert "首次激活会发送一条普通短信" in consent["message"]
    assert doc["sims"] == [
        {"sim": 1, "enabled": True, "title": "免费网络短信(SIM卡1)"},
        {"sim": 2, "enabled": False, "title": "免费网络短信(SIM卡2)"},
    ]
    assert starts == [screens.ENABLE_MX] and h.settings_get("secure", "cloud_messaging_on") == "1"

    st, out, _ = cli(ota, "cm", "on", "--sim", "1", "--json")  # already on: nothing tapped
    doc = json.loads(out)
    assert st == ExitStatus.OK and doc["changed"] is False and doc["consent"] == [] and starts == [screens.ENABLE_MX]

    st, out, _ = cli(ota, "cm", "off")
    assert st == ExitStatus.OK and "Cloud Messaging off" in out
    assert starts == [screens.ENABLE_MX, screens.DISABLE_MX]
    st, out, _ = cli(ota, "cm", "status", "--ui", "--json")
    assert [(s["sim"], s["enabled"]) for s in json.loads(out)["sims"]] == [(1, False), (2, False)]

    st, out, err = cli(ota, "cm", "on", "--sim", "2")  # human output names the consent
    assert st == ExitStatus.OK and "SIM 2 on" in out and "accepted MIUI's activation consent for SIM 2" in err
    cli(ota, "cm", "off")


def test_presence_reads_the_compose_hint(ota):
    h = ota.lab.handsets[0].handset
    number = "+8613800009999"
    answers = []

    def answer(intent):  # the app's presence answer for this number: reachable over Mi Message
        if intent.action == screens.PRESENCE_COMMAND and intent.extras.get("to") == number:
            answers.append(number)
            screens.show_presence(h, number, True)

    h.add_intent_listener(answer)
    st, out, err = cli(ota, "presence", number, "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert answers == [number] and (doc["online"], doc["shown"]) == (True, "免费网络短信")
    st, out, _ = cli(ota, "presence", "+8613800008888", "--json")  # no answer: the SMS hint stays
    assert st == ExitStatus.OK and (json.loads(out)["online"], json.loads(out)["shown"]) == (False, "短信")


def test_presence_waits_settle_seconds_before_an_sms_hint_counts(ota):
    import threading

    h = ota.lab.handsets[0].handset
    number = "+8613800007777"

    def late(intent):  # the app's look-up answers a moment after the screen opened
        if intent.action == screens.PRESENCE_COMMAND and intent.extras.get("to") == number:
            threading.Timer(1.5, screens.show_presence, (h, number, True)).start()

    h.add_intent_listener(late)
    st, out, err = cli(ota, "presence", number, "--settle", "0", "--json")  # the first hint is taken
    assert st == ExitStatus.OK, err
    assert (json.loads(out)["online"], json.loads(out)["shown"]) == (False, "短信")
    st, out, err = cli(ota, "presence", number, "--json")  # 3 s: the answer comes in
    assert st == ExitStatus.OK, err
    assert (json.loads(out)["online"], json.loads(out)["shown"]) == (True, "免费网络短信")
    st, _, err = cli(ota, "presence", number, "--settle", "30", "--timeout", "5")
    assert st == ExitStatus.USAGE and "--settle (30) must be >= 0 and less than --timeout (5)" in err


def test_an_english_copy_of_the_single_sim_build(tmp_path):
    copy = tmp_path / "en.yaml"
    copy.write_text(
        "extends: miui-v5-2014-08-10\nname: ota-en-1sim\nsim_count: 1\nprops:\n  persist.sys.locale: en-US\n"
    )
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            cloud=False,
            profile=str(copy),
            home=tmp_path / "h",
        )
    ) as lt:
        st, out, err = cli(lt, "cm", "on", "--json")
        assert st == ExitStatus.OK, err
        doc = json.loads(out)
        assert doc["sims"] == [{"sim": 1, "enabled": True, "title": "Mi Message"}]
        assert doc["consent"][0]["title"] == "Mi Message" and doc["consent"][0]["accepted"] == "Activate"
        st, out, _ = cli(lt, "cm", "status", "--ui", "--json")
        assert json.loads(out)["sims"] == [{"sim": 1, "enabled": True, "title": "Mi Message"}]
        st, out, _ = cli(lt, "cm", "off", "--json")
        assert st == ExitStatus.OK and json.loads(out)["enabled"] is False


def test_a_consent_left_on_screen_is_cancelled_before_reading(tmp_path):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            cloud=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path / "h",
        )
    ) as lt:
        h = lt.lab.handsets[0].handset
        cli(lt, "cm", "status", "--ui", "--json")  # opens the screen
        (sim1, _sim2) = parse_switches(dump_ui(_handset(lt), timeout=10))
        _handset(lt).shell(f"input tap {sim1.center[0]} {sim1.center[1]}")  # a user taps, walks away
        st, out, err = cli(lt, "cm", "status", "--ui", "--json")
        assert st == ExitStatus.OK, err
        doc = json.loads(out)
        assert [(s["sim"], s["enabled"]) for s in doc["sims"]] == [(1, False), (2, False)]
        assert doc["sources"]["notes"] == ["cancelled a consent dialog left on screen: '免费发送短信'"]
        assert h.settings_get("secure", "cloud_messaging_on") == "0"
        _handset(lt).shell(f"input tap {sim1.center[0]} {sim1.center[1]}")
        st, out, err = cli(lt, "cm", "on", "--sim", "1", "--json")  # cancelled, then asked anew
        doc = json.loads(out)
        assert st == ExitStatus.OK and [c["sim"] for c in doc["consent"]] == [1] and doc["sources"]["notes"]


def _handset(lt):
    from hostctl.device import select_handset, servers_from_env

    return select_handset(None, servers_from_env({"ANDROID_ADB_SERVER_PORT": str(lt.config.adb_port)}), timeout=10)


def test_on_for_every_sim_accepts_each_sims_consent(tmp_path):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            cloud=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path / "h",
        )
    ) as lt:
        st, out, err = cli(lt, "cm", "on", "--json")
        assert st == ExitStatus.OK, err
        doc = json.loads(out)
        assert [c["sim"] for c in doc["consent"]] == [1, 2]
        assert [(s["sim"], s["enabled"]) for s in doc["sims"]] == [(1, True), (2, True)]
        st, out, _ = cli(lt, "messages", "--limit", "1")
        assert st == ExitStatus.OK and out.splitlines()[0].split()[4:6] == ["SIM_ID", "SLOT"]


def test_blocked_input_injection_says_what_to_enable(tmp_path):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            cloud=False,
            profile="miui-12-android-11",
            home=tmp_path / "h",
        )
    ) as lt:
        st, _, err = cli(lt, "cm", "on")
        assert st == ExitStatus.ERROR and "USB debugging (Security settings)" in err
        assert lt.lab.handsets[0].handset.settings_get("secure", "cloud_messaging_on") == "0"


class _KilledDumps:
    """A handset whose uiautomator dump is killed ``kills`` times. Like a device, it keeps the dump
    file: a killed dump leaves the previous screen's file where it was."""

    serial = "fake"
    SCREEN = '<?xml version=\'1.0\' ?><hierarchy rotation="0"><node text="now" /></hierarchy>'

    def __init__(self, kills: int, old: str | None = None) -> None:
        self.kills, self.calls, self.file = kills, 0, old

    def batch(self, commands, *, timeout=None):
        self.calls += 1
        out = []
        for cmd in commands:
            if cmd.startswith("rm -f "):
                self.file = None
                out.append(ShellResult(cmd, 0, ""))
            elif cmd.startswith("uiautomator dump "):
                if self.calls <= self.kills:
                    out.append(ShellResult(cmd, 137, "Killed\n"))
                else:
                    self.file = self.SCREEN
                    out.append(ShellResult(cmd, 0, "UI hierchary dumped to: x\n"))
            elif cmd.startswith("cat "):
                out.append(
                    ShellResult(cmd, 0, self.file)
                    if self.file is not None
                    else ShellResult(cmd, 1, f"{cmd}: No such file or directory\n")
                )
            else:
                raise AssertionError(cmd)
        return out


def test_a_killed_uiautomator_dump_is_retried():
    h = _KilledDumps(kills=2)
    assert dump_ui(h, timeout=1) == _KilledDumps.SCREEN and h.calls == 3
    with pytest.raises(CommandError, match="failed 3 times: Killed"):
        dump_ui(_KilledDumps(kills=3), timeout=1)


def test_a_killed_dump_never_passes_off_the_previous_screen():
    old = '<?xml version=\'1.0\' ?><hierarchy rotation="0"><node text="before" /></hierarchy>'
    h = _KilledDumps(kills=1, old=old)
    assert dump_ui(h, timeout=1) == _KilledDumps.SCREEN and h.calls == 2
    with pytest.raises(CommandError):
        dump_ui(_KilledDumps(kills=3, old=old), timeout=1)


def test_parse_switches_names_what_it_saw_when_nothing_matches():
    xml = (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">"
        '<node index="0" text="Cloud Messaging" resource-id="com.android.mms:id/cloud_messaging_switch_sim1" '
        'checkable="true" checked="true" bounds="[0,200][720,300]" />'
        '<node index="1" text="Delivery reports" resource-id="android:id/title" bounds="[0,300][720,400]" />'
        "</hierarchy>"
    )
    with pytest.raises(ValueError, match="titles seen: 'Delivery reports'"):
        parse_switches(xml)
    with pytest.raises(ValueError):
        parse_switches("<hierarchy><node")
