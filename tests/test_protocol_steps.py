"""The protocol steps (hostctl.steps) through the real adb path, against emulated labs: what the
handset shows afterwards, and what the lab saw (the build's requests, the carrier, the server)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import wait_for

from hostctl import steps
from hostctl.device import AdbAddress, Handset
from hostctl.emulator import screens
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.errors import DeviceError, DeviceNotFoundError

CONTACT = "+8613912345678"
PEER = "+8613800000001"


def _lab(adb_port, home, profile, **kw) -> LabThread:
    return LabThread(
        LabConfig(
            adb_port=adb_port, handsets=1, profile=profile, home=home, modem=False, relay=False, consoles=False, **kw
        )
    )


@pytest.fixture(scope="module")
def lab07(adb_port, tmp_path_factory):
    """One handset on the leaky 2014-07 build: it reports contacts, logins, ... (Cloud Messaging on)."""
    home = tmp_path_factory.mktemp("steps-07")
    with _lab(adb_port, home, "miui-v5-2014-07") as lt:
        yield lt


@pytest.fixture(scope="module")
def lab11(adb_port, tmp_path_factory):
    """One MIUI 12 / Android 11 handset (no app processes): the modern shell paths."""
    home = tmp_path_factory.mktemp("steps-11")
    with _lab(adb_port, home, "miui-12-android-11", with_apps=False, pcapdroid=False) as lt:
        yield lt


def _h(lt: LabThread, adb_port: int, i: int = 0) -> Handset:
    return Handset(lt.lab.handsets[i].serial, AdbAddress("127.0.0.1", adb_port))


def _requests(lh, event: str) -> list:
    return [r for r in lh.emitted if r.event == event]


# --- add a contact ------------------------------------------------------------------------------


def test_add_contact_inserts_provider_rows_and_the_build_reports_the_number(lab07, adb_port):
    lh = lab07.lab.handsets[0]
    h = _h(lab07, adb_port)
    res = steps.add_contact(h, CONTACT, "Zhang O'Wei, Jr", timeout=20)
    raw = res.rows["raw_contact_id"]
    assert res.ok and set(res.rows["data"]) == {"name", "phone"}
    commands = [c.command for c in res.commands]
    assert any("raw_contacts --bind account_type:s: --bind account_name:s:" in c for c in commands)
    assert all(c.exit_code == 0 for c in res.commands)
    # the device shows it: a raw contact named after the name row, and its phone row (mobile)
    out = h.run(
        f"content query --uri content://com.android.contacts/data --projection mimetype:data1:data2 "
        f"--where 'raw_contact_id={raw}'"
    )
    assert f"mimetype=vnd.android.cursor.item/phone_v2, data1={CONTACT}, data2=2" in out
    assert "data1=Zhang O'Wei, Jr" in out
    assert "display_name=Zhang O'Wei, Jr" in h.run(
        f"content query --uri content://com.android.contacts/raw_contacts/{raw} --projection display_name"
    )
    # the lab saw the contact created: the 2014-07 build reports its number, and looks it up
    assert any(r.fields.get("contact") == CONTACT for r in _requests(lh, "contact_added"))
    assert any(r.fields.get("number") == CONTACT for r in _requests(lh, "presence_lookup"))
    cm = lab07.lab.cloud.cm
    wait_for(lambda: any(o.path == "/contacts/report" and CONTACT in str(o.fields) for o in cm.observed), 10)


def test_delete_contact_by_number_removes_raw_contact_and_data(lab07, adb_port):
    h = _h(lab07, adb_port)
    added = steps.add_contact(h, "+8613900000777", "To delete", timeout=20)
    res = steps.delete_contact(h, "+86 139-0000-0777", timeout=20)
    assert res.rows["deleted_raw_contact_ids"] == [added.rows["raw_contact_id"]]
    out = h.run("content query --uri content://com.android.contacts/data --where \"data1='+8613900000777'\"")
    assert out.strip() == "No result found."
    again = steps.delete_contact(h, "+8613900000777", timeout=20)
    assert again.rows["deleted_raw_contact_ids"] == [] and "nothing deleted" in again.notes[0]


def test_opt_in_build_creates_the_contact_without_reporting_it(lab, adb_port):
    lh = lab.lab.handsets[0]
    h = _h(lab, adb_port)
    before = len(lh.emitted)
    res = steps.add_contact(h, CONTACT, "Quiet", timeout=20)
    assert res.rows["raw_contact_id"] >= 1
    assert _requests(lh, "contact_added")[before:] == [] and len(lh.emitted) == before  # Cloud Messaging off
    steps.delete_contact(h, raw_contact_id=res.rows["raw_contact_id"], timeout=20)


@pytest.mark.parametrize("number", ["", "12", "+86 138 0013 8000; reboot", "tel:123", "+" + "1" * 16])
def test_bad_numbers_are_refused_before_any_command(lab07, adb_port, number):
    h = _h(lab07, adb_port)
    with pytest.raises(ValueError, match="not a phone number"):
        steps.add_contact(h, number, "x")
    with pytest.raises(ValueError, match="not a phone number"):
        steps.place_call(h, number)


def test_null_binding_exists_on_android_11_only(lab07, lab11, adb_port):
    insert = (
        "content insert --uri content://com.android.contacts/raw_contacts --bind account_type:n: --bind account_name:n:"
    )
    old = _h(lab07, adb_port).shell(insert)
    assert "Unsupported type: n" in old.output
    assert _h(lab11, adb_port).shell(insert).ok


# --- a call ---------------------------------------------------------------------------------------


def test_call_goes_off_hook_reaches_the_lab_and_hangs_up(lab07, adb_port):
    lh = lab07.lab.handsets[0]
    h = _h(lab07, adb_port)
    calls: list[str] = []
    real = lh.place_call
    lh.place_call = lambda number: calls.append(number) or real(number)
    try:
        res = steps.place_call(h, PEER, seconds=0.3, timeout=20)
    finally:
        del lh.place_call
    assert calls == [PEER]
    states = [s for _, s in res.details["call_states"]]
    assert states[0] == 2 and states[-1] == 0 and res.details["off_hook_seconds"] >= 0.3
    assert any(c.command == "am start -a android.intent.action.CALL -d tel:" + PEER for c in res.commands)
    assert any(c.command == "input keyevent KEYCODE_ENDCALL" for c in res.commands)
    assert "not emulated" in res.notes[0]
    assert lh.handset.call_state == 0
    assert "mCallState=0" in h.run("dumpsys telephony.registry")
    assert _requests(lh, "call") == []  # the 2014 builds send nothing about a call


def test_call_in_airplane_mode_fails_with_the_evidence(lab07, adb_port):
    h = _h(lab07, adb_port)
    steps.set_airplane(h, True, timeout=20)
    try:
        with pytest.raises(steps.StepError, match="airplane mode is on") as err:
            steps.place_call(h, PEER, seconds=0.1, timeout=15)
        assert isinstance(err.value, DeviceError) and err.value.serial == h.serial
    finally:
        steps.set_airplane(h, False, timeout=20)


# --- Mi Cloud -------------------------------------------------------------------------------------


def test_micloud_login_through_the_settings_screen(lab07, adb_port):
    lh = lab07.lab.handsets[0]
    h = _h(lab07, adb_port)
    assert steps.micloud_status(h).signed_in is False
    assert lh.micloud_logged_in is False and _requests(lh, "micloud_login") == []
    res = steps.micloud_login(h, timeout=30)
    assert res.details["signed_in"] and res.details["changed"] and res.details["xiaomi_account_listed"]
    assert res.details["account"] == screens.lab_account(lh.handset)
    assert any(c.command.startswith("input tap ") for c in res.commands)
    assert lh.micloud_logged_in is True
    bind = _requests(lh, "micloud_login")  # the 2014-07 build binds the device, IMSI and all
    assert bind and bind[0].path == "/device/bind" and bind[0].fields["imsi"] == lh.identity.sims[0].imsi
    status = steps.micloud_status(h, ui=True)
    assert status.signed_in and status.account == res.details["account"] and status.sources["ui"]["signed_in"]
    again = steps.micloud_login(h, timeout=30)
    assert again.details["changed"] is False and len(_requests(lh, "micloud_login")) == len(bind)


def test_micloud_login_where_input_is_blocked_is_not_possible(lab11, adb_port):
    with pytest.raises(steps.StepNotPossible, match="USB debugging \\(Security settings\\)"):
        steps.micloud_login(_h(lab11, adb_port), timeout=20)


_FORM = """<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation="0">
<node text="" resource-id="" class="android.widget.FrameLayout" package="com.xiaomi.account" bounds="[0,0][720,1280]">
<node text="" resource-id="com.xiaomi.account:id/et_account_name" class="android.widget.EditText" package="com.xiaomi.account" clickable="true" password="false" bounds="[40,300][680,380]" />
<node text="" resource-id="com.xiaomi.account:id/et_account_password" class="android.widget.EditText" package="com.xiaomi.account" clickable="true" password="true" bounds="[40,400][680,480]" />
<node text="Sign in" resource-id="com.xiaomi.account:id/btn_login" class="android.widget.Button" package="com.xiaomi.account" clickable="true" password="false" bounds="[40,520][680,600]" />
</node></hierarchy>"""


def test_reads_a_xiaomi_account_form_and_a_signed_in_screen():
    form = steps.read_micloud_screen(_FORM)
    assert not form["signed_in"] and form["sign_in"] is None
    assert form["form"]["account"].center == (360, 340) and form["form"]["password"].password
    assert form["form"]["button"].center == (360, 560)
    done = steps.read_micloud_screen(_FORM.replace('text="Sign in"', 'text="Signed in as 1234567"'))
    assert done["signed_in"] and done["account"] == "1234567"


# --- airplane mode --------------------------------------------------------------------------------


def test_airplane_on_kitkat_detaches_and_reattaches_the_sims(lab07, adb_port):
    lh = lab07.lab.handsets[0]
    h = _h(lab07, adb_port)
    carrier = lab07.lab.carrier
    numbers = [s.msisdn for s in lh.identity.sims]
    on = steps.set_airplane(h, True, timeout=20)
    assert on.details["method"] == "settings put + am broadcast AIRPLANE_MODE" and on.details["sdk"] == 19
    assert on.details["setting_after"] == "1" and not any(carrier.attached(n) for n in numbers)
    off = steps.set_airplane(h, False, timeout=20)
    assert off.details["setting_after"] == "0" and all(carrier.attached(n) for n in numbers)
    assert h.shell("cmd connectivity airplane-mode").exit_code == 127  # no `cmd` before 7.0
    assert h.shell("which cmd").exit_code == 1


def test_airplane_on_android_11_uses_the_connectivity_shell_command(lab11, adb_port):
    lh = lab11.lab.handsets[0]
    h = _h(lab11, adb_port)
    number = lh.identity.sims[0].msisdn
    refused = h.shell("am broadcast -a android.intent.action.AIRPLANE_MODE --ez state true")
    assert refused.exit_code == 255 and "not allowed to send broadcast" in refused.output
    on = steps.set_airplane(h, True, timeout=20)
    assert on.details["method"] == "cmd connectivity airplane-mode" and on.details["sdk"] == 30
    assert not lab11.lab.carrier.attached(number)
    assert h.run("cmd connectivity airplane-mode").strip() == "enabled"
    steps.set_airplane(h, False, timeout=20)
    assert lab11.lab.carrier.attached(number)
    assert h.shell("cmd nosuchservice").exit_code == 20


# --- reboot, reset, the server's store ------------------------------------------------------------


def test_reboot_takes_the_device_down_and_brings_it_back_booted(lab07, adb_port):
    lh = lab07.lab.handsets[0]
    h = _h(lab07, adb_port)
    boots = len(_requests(lh, "boot"))
    res = steps.reboot(h, timeout=60)
    # the emulated adbd serves adb's reboot: service (daemon/services.cpp), so no shell fallback
    assert res.details["method"] == "adb reboot:" and res.details["boot_marker"] is True
    assert [c.command for c in res.commands][-1] == "adb reboot (reboot: service)"
    assert res.details["went_away_after"] < res.details["back_after"]
    assert h.run("getprop sys.boot_completed").strip() == "1"
    assert h.run(f"getprop {steps.BOOT_MARKER}").strip() == ""  # runtime properties died with it
    assert lh.powered
    wait_for(lambda: len(_requests(lh, "boot")) > boots, 10)  # the build booted again


def test_factory_reset_clears_contacts_settings_and_login(lab07, adb_port):
    lh = lab07.lab.handsets[0]
    h = _h(lab07, adb_port)
    steps.add_contact(h, CONTACT, "Before reset", timeout=20)
    h.run("settings put secure hostctl_probe 1")
    if not lh.micloud_logged_in:
        steps.micloud_login(h, timeout=30)
    res = steps.factory_reset(h, home=lab07.lab.home, timeout=60)
    assert res.details["emulated"] and res.details["handset"]["serial"] == h.serial
    assert any(c.command == "lab control reset" for c in res.commands)
    assert h.run("content query --uri content://com.android.contacts/raw_contacts").strip() == "No result found."
    assert h.run("settings get secure hostctl_probe").strip() == "null"
    assert lh.micloud_logged_in is False and steps.micloud_status(h).signed_in is False


def test_lab_cloud_state_reports_the_store(lab, adb_port):
    h = _h(lab, adb_port)
    state = steps.lab_cloud_state(h, home=lab.lab.home, timeout=15)
    assert state["retained"]["bodies"] == state["retained"]["messages"] == 0
    assert set(state["stats"]) >= {"routed_ip", "stored", "expired", "delivered_later"}
    assert state["serial"] == h.serial and state["ttl"] > 0
    assert json.loads(json.dumps(state)) == state


def test_lab_cloud_state_shows_what_the_store_holds(lab, adb_port, monkeypatch):
    cm = lab.lab.cloud.cm
    monkeypatch.setattr(cm, "retained", lambda: {"messages": 2, "bytes": 42})  # two bodies waiting
    state = steps.lab_cloud_state(_h(lab, adb_port), home=lab.lab.home)
    assert state["retained"] == {"messages": 2, "bytes": 42, "bodies": 2}


class _RealLooking(Handset):
    """An emulated handset whose info() says it is not: what the host sees of a real handset."""

    def info(self, *, probe_su: bool = False):
        return dataclasses.replace(super().info(probe_su=probe_su), emulated=False, emulated_evidence="")


def test_a_real_handset_cannot_be_reset_or_have_its_server_inspected(lab, adb_port):
    h = _RealLooking(lab.lab.handsets[1].serial, AdbAddress("127.0.0.1", adb_port))
    with pytest.raises(steps.StepNotPossible, match="--assume-reset") as reset:
        steps.factory_reset(h, home=lab.lab.home)
    assert reset.value.serial == h.serial and reset.value.step == "factory reset"
    with pytest.raises(steps.StepNotPossible, match="no-retention can only be inspected on the emulated server"):
        steps.lab_cloud_state(h, home=lab.lab.home)


def test_an_emulated_handset_without_its_lab_is_not_possible(lab, adb_port, tmp_path):
    with pytest.raises(steps.StepNotPossible, match="no hostctl lab"):
        steps.lab_cloud_state(_h(lab, adb_port), home=tmp_path)


def test_a_vanished_device_is_a_device_error(adb_port):
    h = Handset("127.0.0.1:1", AdbAddress("127.0.0.1", adb_port))
    with pytest.raises(DeviceNotFoundError):
        steps.add_contact(h, CONTACT, "Nobody", timeout=5)
    with pytest.raises(DeviceNotFoundError):
        steps.set_airplane(h, True, timeout=5)


def test_parse_rows_keeps_commas_inside_values():
    text = "Row: 0 _id=3, mimetype=vnd.android.cursor.item/name, data1=Li, Wei\nRow: 1 _id=4, mimetype=x, data1=NULL\n"
    assert steps.parse_rows(text, ["_id", "mimetype", "data1"]) == [
        {"_id": "3", "mimetype": "vnd.android.cursor.item/name", "data1": "Li, Wei"},
        {"_id": "4", "mimetype": "x", "data1": None},
    ]
