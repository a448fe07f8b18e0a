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
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, with_apps=False, modem=False, cloud=False,
                             profile="miui-v5-2014-08-10", home=tmp_path_factory.mktemp("ota"))) as lt:
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
    assert consent["sim"] == 1 and consent["title"] == "声明与条款" and consent["accepted"] == "同意并继续"
    assert "首次激活会发送一条普通短信" in consent["message"]
    assert doc["sims"] == [{"sim": 1, "enabled": True, "title": "免费网络短信(SIM卡1)"},
                           {"sim": 2, "enabled": False, "title": "免费网络短信(SIM卡2)"}]
    assert starts == [screens.ENABLE_MX] and h.settings_get("secure", "cloud_messaging_on") == "1"

    st, out, _ = cli(ota, "cm", "on", "--sim", "1", "--json")        # already on: nothing tapped
    doc = json.loads(out)
    assert st == ExitStatus.OK and doc["changed"] is False and doc["consent"] == [] and starts == [screens.ENABLE_MX]

    st, out, _ = cli(ota, "cm", "off")
    assert st == ExitStatus.OK and "Cloud Messaging off" in out
    assert starts == [screens.ENABLE_MX, screens.DISABLE_MX]
    st, out, _ = cli(ota, "cm", "status", "--ui", "--json")
    assert [(s["sim"], s["enabled"]) for s in json.loads(out)["sims"]] == [(1, False), (2, False)]

    st, out, err = cli(ota, "cm", "on", "--sim", "2")                 # human output names the consent
    assert st == ExitStatus.OK and "SIM 2 on" in out and "accepted MIUI's activation consent for SIM 2" in err
    cli(ota, "cm", "off")


def test_presence_reads_the_compose_hint(ota):
    h = ota.lab.handsets[0].handset
    number = "+8613800009999"
    answers = []

    def answer(intent):            # the app's presence answer for this number: reachable over Mi Message
        if intent.action == screens.PRESENCE_COMMAND and intent.extras.get("to") == number:
            answers.append(number)
            screens.show_presence(h, number, True)
    h.add_intent_listener(answer)
    st, out, err = cli(ota, "presence", number, "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert answers == [number] and (doc["online"], doc["shown"]) == (True, "免费网络短信")
    st, out, _ = cli(ota, "presence", "+8613800008888", "--json")      # no answer: the SMS hint stays
    assert st == ExitStatus.OK and (json.loads(out)["online"], json.loads(out)["shown"]) == (False, "短信")


def test_an_english_copy_of_the_single_sim_build(tmp_path):
    copy = tmp_path / "en.yaml"
    copy.write_text("extends: miui-v5-2014-08-10\nname: ota-en-1sim\nsim_count: 1\n"
                    "props:\n  persist.sys.locale: en-US\n")
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, with_apps=False, modem=False, cloud=False,
                             profile=str(copy), home=tmp_path / "h")) as lt:
        st, out, err = cli(lt, "cm", "on", "--json")
        assert st == ExitStatus.OK, err
        doc = json.loads(out)
        assert doc["sims"] == [{"sim": 1, "enabled": True, "title": "Mi Message"}]
        assert doc["consent"][0]["title"] == "Terms and Conditions" and doc["consent"][0]["accepted"] == "Allow"
        st, out, _ = cli(lt, "cm", "status", "--ui", "--json")
        assert json.loads(out)["sims"] == [{"sim": 1, "enabled": True, "title": "Mi Message"}]
        st, out, _ = cli(lt, "cm", "off", "--json")
        assert st == ExitStatus.OK and json.loads(out)["enabled"] is False


def test_on_for_every_sim_accepts_each_sims_consent(tmp_path):
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, with_apps=False, modem=False, cloud=False,
                             profile="miui-v5-2014-08-10", home=tmp_path / "h")) as lt:
        st, out, err = cli(lt, "cm", "on", "--json")
        assert st == ExitStatus.OK, err
        doc = json.loads(out)
        assert [c["sim"] for c in doc["consent"]] == [1, 2]
        assert [(s["sim"], s["enabled"]) for s in doc["sims"]] == [(1, True), (2, True)]
        st, out, _ = cli(lt, "messages", "--limit", "1")
        assert st == ExitStatus.OK and out.splitlines()[0].split()[4:6] == ["SIM_ID", "SLOT"]


def test_blocked_input_injection_says_what_to_enable(tmp_path):
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, with_apps=False, modem=False, cloud=False,
                             profile="miui-12-android-11", home=tmp_path / "h")) as lt:
        st, _, err = cli(lt, "cm", "on")
        assert st == ExitStatus.ERROR and "USB debugging (Security settings)" in err
        assert lt.lab.handsets[0].handset.settings_get("secure", "cloud_messaging_on") == "0"


class _KilledDumps:
    """A handset whose uiautomator dump is killed ``kills`` times (the output lacks <hierarchy)."""

    serial = "fake"

    def __init__(self, kills: int) -> None:
        self.kills, self.calls = kills, 0

    def batch(self, commands, *, timeout=None):
        self.calls += 1
        if self.calls <= self.kills:
            return [ShellResult(commands[0], 137, "Killed\n"), ShellResult(commands[1], 0, "")]
        return [ShellResult(commands[0], 0, "UI hierchary dumped to: x\n"),
                ShellResult(commands[1], 0, "<?xml version='1.0' ?><hierarchy rotation=\"0\"></hierarchy>")]


def test_a_killed_uiautomator_dump_is_retried():
    h = _KilledDumps(kills=2)
    assert dump_ui(h, timeout=1).endswith("</hierarchy>") and h.calls == 3
    with pytest.raises(CommandError, match="failed 3 times: Killed"):
        dump_ui(_KilledDumps(kills=3), timeout=1)


def test_parse_switches_names_what_it_saw_when_nothing_matches():
    xml = ("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">"
           '<node index="0" text="Cloud Messaging" resource-id="com.android.mms:id/cloud_messaging_switch_sim1" '
           'checkable="true" checked="true" bounds="[0,200][720,300]" />'
           '<node index="1" text="Delivery reports" resource-id="android:id/title" bounds="[0,300][720,400]" />'
           "</hierarchy>")
    with pytest.raises(ValueError, match="titles seen: 'Delivery reports'"):
        parse_switches(xml)
    with pytest.raises(ValueError):
        parse_switches("<hierarchy><node")
