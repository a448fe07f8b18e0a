"""VirtualHandset state: persistence, factory reset, props, SMS store guard, processes, UI."""

from pathlib import Path

import pytest
from test_shell_kit import make_handset

from hostctl.emulator.handset import ContentError, Intent, ReadOnlyPropertyError, View, VirtualHandset
from hostctl.emulator.identity import generate_identity, luhn_ok
from hostctl.emulator.profiles import load_profile


def test_state_persists_across_instances(tmp_path: Path) -> None:
    h = make_handset(tmp_path)
    ident = h.identity
    h.settings_put("secure", "cloud_messaging_on", "0")
    h.setprop("persist.sys.mx", "1")
    h.setprop("debug.temp", "x")
    row = h.sms_insert({"address": "+8613800138000", "body": "hello", "mx_status": 65537}, "content://sms/inbox")
    h.fs.host_path("/sdcard/note.txt").write_text("kept")
    h.close()

    h2 = make_handset(tmp_path)
    assert h2.identity == ident
    assert h2.settings_get("secure", "cloud_messaging_on") == "0"
    assert h2.getprop("persist.sys.mx") == "1"
    assert h2.getprop("debug.temp") == ""  # runtime props do not survive a reboot
    names, rows = h2.sms_query("content://sms", ["_id", "body", "type", "mx_status"])
    assert names == ["_id", "body", "type", "mx_status"]
    assert rows == [(row, "hello", 1, 65537)]
    assert h2.fs.host_path("/sdcard/note.txt").read_text() == "kept"
    h2.close()


def test_factory_reset_keeps_identity_only(tmp_path: Path) -> None:
    h = make_handset(tmp_path)
    ident = h.identity
    h.settings_put("secure", "cloud_messaging_on", "0")
    h.settings_put("system", "extra", "1")
    h.setprop("persist.sys.mx", "1")
    h.sms_insert({"address": "10086", "body": "x"})
    h.fs.host_path("/sdcard/a").write_text("a")
    h.fs.host_path("/data/local/tmp/b").write_text("b")
    h.factory_reset()
    assert h.identity == ident
    assert h.settings_get("secure", "cloud_messaging_on") == "1"  # the profile default
    assert h.settings_get("system", "extra") is None
    assert h.getprop("persist.sys.mx") == ""
    assert h.sms_query()[1] == []
    assert list(h.fs.host_path("/sdcard").iterdir()) == []
    assert list(h.fs.host_path("/data/local/tmp").iterdir()) == []
    h.close()
    assert make_handset(tmp_path).identity == ident


def test_ota_profile_defaults_off(tmp_path: Path) -> None:
    h = make_handset(tmp_path, "miui-v5-2014-08-10")
    assert h.settings_get("secure", "cloud_messaging_on") == "0"


def test_props_reflect_identity_and_profile(tmp_path: Path) -> None:
    h = make_handset(tmp_path)
    props = h.props()
    sims = h.identity.sims
    assert props["ro.build.version.release"] == "4.4.4"
    assert props["ro.build.version.sdk"] == "19"
    assert props["ro.miui.ui.version.name"] == "V5"
    assert props["ro.miui.ui.version.code"] == "3"
    assert props["ro.product.marketname"] == "Redmi 1S"
    assert props["gsm.sim.operator.numeric"] == "46000,46000"
    assert props["gsm.sim.operator.alpha"] == "CHINA MOBILE,CHINA MOBILE"
    assert props["ro.ril.miui.imei0"] == sims[0].imei and luhn_ok(props["ro.ril.miui.imei1"])
    assert props["persist.radio.imei2"] == sims[1].imei
    assert props["ro.ril.oem.imei"] == f"{sims[0].imei},{sims[1].imei}"
    assert h.banner_props() == {"ro.product.name": "armani", "ro.product.model": "HM 1S", "ro.product.device": "armani"}


def test_ro_props_are_read_only(tmp_path: Path) -> None:
    h = make_handset(tmp_path)
    with pytest.raises(ReadOnlyPropertyError):
        h.setprop("ro.product.model", "x")
    h.setprop("ro.new.key", "1")  # an unset ro.* can be set once, like init allows
    with pytest.raises(ReadOnlyPropertyError):
        h.setprop("ro.new.key", "2")
    assert h.getprop("ro.new.key") == "1"


def test_banner_strips_separators(tmp_path: Path) -> None:
    from dataclasses import replace

    base = load_profile("miui-v5-2014-07")
    prof = replace(base, product=replace(base.product, model="HM:1S;=x"))
    h = VirtualHandset(label="b", profile=prof, state_dir=tmp_path / "s")
    assert h.banner_props()["ro.product.model"] == "HM1Sx"


def test_given_identity_is_used(tmp_path: Path) -> None:
    ident = generate_identity("other", sim_count=1, mcc_mnc="46001", operator_name="UNICOM")
    h = make_handset(tmp_path, identity=ident)
    assert h.identity == ident
    assert h.getprop("gsm.sim.operator.numeric") == "46001"


def test_identity_props_follow_the_profile_and_the_sims_present(tmp_path: Path) -> None:
    # the default IMEI set follows the SIMs actually present (a given 1-SIM identity)
    one = generate_identity("one", sim_count=1, mcc_mnc="46000", operator_name="CHINA MOBILE")
    h = make_handset(tmp_path / "a", identity=one)
    assert h.identifier_props() == {
        "ro.ril.oem.imei": one.imeis[0],
        "ro.ril.miui.imei0": one.imeis[0],
        "ro.ril.oem.imei1": one.imeis[0],
        "persist.radio.imei1": one.imeis[0],
    }
    # a template naming a slot this handset lacks is left out, the rest filled in
    h = make_handset(tmp_path / "b", "miui-12-mtk-dual", identity=one)
    assert h.identifier_props() == {"ro.ril.miui.imei0": one.imeis[0], "vendor.ril.iccid.sim1": one.sims[0].iccid}
    h = make_handset(tmp_path / "c", "miui-12-android-11")
    assert h.identifier_props() == {}
    assert "ro.ril.miui.imei0" not in h.props() and h.getprop("gsm.sim.state") == "READY,READY"


def test_sms_where_cannot_attach_or_write(tmp_path: Path) -> None:
    h = make_handset(tmp_path)
    h.sms_insert({"address": "1", "body": "a"})
    target = tmp_path / "attached.db"
    for where in (
        f"1=1; ATTACH DATABASE '{target}' AS x",
        "_id IN (SELECT 1 FROM pragma_table_info('sms'))",
        "load_extension('/tmp/evil.so') IS NULL",
    ):
        with pytest.raises(ContentError):
            h.sms_query(where=where)
    # The authorizer itself denies ATTACH, whatever the parser lets through.
    with pytest.raises(ContentError, match="not authorized"):
        h._guarded(None, lambda db: db.execute(f"ATTACH DATABASE '{target}' AS x"))
    with pytest.raises(ContentError, match="not authorized"):
        h._guarded(None, lambda db: db.execute("DELETE FROM sms"))
    assert not target.exists()
    assert len(h.sms_query()[1]) == 1


def test_sms_update_delete_and_boxes(tmp_path: Path) -> None:
    h = make_handset(tmp_path)
    a = h.sms_insert({"address": "1", "body": "in"}, "content://sms/inbox")
    b = h.sms_insert({"address": "2", "body": "out"}, "content://sms/sent")
    assert h.sms_query("content://sms/sent", ["_id"])[1] == [(b,)]
    assert h.sms_update({"read": 1}, "content://sms", f"_id={a}") == 1
    assert h.sms_query(f"content://sms/{a}", ["read"])[1] == [(1,)]
    assert h.sms_delete("content://sms/inbox") == 1
    assert h.sms_query(projection=["_id"])[1] == [(b,)]
    with pytest.raises(ContentError, match="Unknown URL"):
        h.sms_query("content://smsx")


def test_processes_register_and_logcat(tmp_path: Path) -> None:
    h = make_handset(tmp_path)
    assert h.pids_of("system_server") == [712]
    h.register_process("com.xiaomi.xmsf", 43210, 10030)
    assert h.pids_of("com.xiaomi.xmsf") == [43210]
    h.unregister_process(43210)
    assert h.pids_of("com.xiaomi.xmsf") == []
    e = h.log("W", "MxActivateService", "hello", pid=5, tid=6, when=0.25)
    line = e.format()
    assert line.endswith(".250     5     6 W MxActivateService: hello")


def test_intents_and_ui(tmp_path: Path) -> None:
    h = make_handset(tmp_path)
    seen: list[Intent] = []
    h.add_intent_listener(lambda i: seen.append(i) or 7 if i.kind == "broadcast" else None)
    assert h.broadcast(Intent(kind="broadcast", action="x")) == 7
    err = h.start_service(
        Intent(kind="service", component="com.android.mms/com.xiaomi.mms.transaction.MxActivateService")
    )
    assert err == "Error: Requires permission com.xiaomi.permission.CLOUD_MANAGER"
    clicked: list[str] = []
    h.register_screen(
        "com.android.settings/.MxSettings",
        lambda _h: View(
            package="com.android.settings",
            children=[
                View(
                    cls="android.widget.CheckBox",
                    resource_id="android:id/checkbox",
                    checkable=True,
                    clickable=True,
                    bounds=(600, 300, 700, 400),
                    on_click=lambda hh, v: clicked.append(str(v.checked)),
                )
            ],
        ),
    )
    assert h.start_activity(Intent(kind="activity", component="com.android.settings/.MxSettings")) is None
    assert h.current_screen.component == "com.android.settings/com.android.settings.MxSettings"
    view = h.tap(650, 350)
    assert view is not None and view.checked and clicked == ["True"]
    assert 'checkable="true" checked="true" clickable="true"' in h.ui_dump_xml()
    h.go_back()
    assert h.current_screen.package == "com.miui.home"
