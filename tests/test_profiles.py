"""Firmware profiles: the shipped ones load, bad files are rejected naming the key."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from hostctl.emulator.adb.connection import DEFAULT_FEATURES, features_for_sdk
from hostctl.emulator.profiles import ProfileError, list_profiles, load_profile


def test_shipped_profiles_are_listed() -> None:
    assert list_profiles() == ["android-4.4-dumpsys-only", "miui-12-android-11",
                               "miui-12-mtk-dual", "miui-12.5-shell-denied",
                               "miui-7-android-5.0", "miui-v5-2014-07", "miui-v5-2014-08-10"]


def test_every_shipped_profile_loads_and_names_itself() -> None:
    for name in list_profiles():
        p = load_profile(name)
        assert p.name == name and p.source == f"{name}.yaml"
        assert p.packages["com.android.mms"].endswith(".apk")
        assert "com.android.mms/com.xiaomi.mms.transaction.MxActivateService" in \
            p.service_permissions
        assert p.default_settings["secure"]["cloud_messaging_on"] in ("0", "1")
        assert p.build_fingerprint.split("/")[2].split(":")[1] == p.android_release


def test_july_build_has_cloud_messaging_on() -> None:
    p = load_profile("miui-v5-2014-07")
    assert (p.android_release, p.sdk, p.miui_version_name) == ("4.4.4", 19, "V5")
    assert p.product.model == "HM 1S"
    assert p.default_settings["secure"]["cloud_messaging_on"] == "1"
    assert p.cloud_messaging_default is True
    # AOSP 4.4 IPhoneSubInfo.aidl order
    assert [p.iphonesubinfo[m] for m in ("getDeviceId", "getSubscriberId", "getIccSerialNumber",
                                         "getLine1Number")] == [1, 3, 5, 6]
    assert p.iphonesubinfo_method(5) == "getIccSerialNumber"
    assert p.packages["com.android.mms"] == "/system/app/Mms.apk"
    assert p.behaviour.cloud_messaging_default is True and not p.behaviour.sends_nothing


def test_ota_build_has_cloud_messaging_off() -> None:
    p = load_profile("miui-v5-2014-08-10")
    assert p.default_settings["secure"]["cloud_messaging_on"] == "0"
    assert p.cloud_messaging_default is False


def _write(tmp_path: Path, data: dict, name: str = "miui-x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _base() -> dict:
    return yaml.safe_load(
        (Path(__file__).parents[1] / "hostctl/emulator/profiles/miui-v5-2014-07.yaml")
        .read_text(encoding="utf-8"))


def test_load_by_path_and_behaviour_is_parsed(tmp_path: Path) -> None:
    data = _base()
    data["behaviour"] = {"events": {"boot": [{"endpoint": "account", "fields": {
        "imei": {"source": "imei", "protection": "plain"}}}]}}
    p = load_profile(_write(tmp_path, data))
    assert [f.name for f in p.behaviour.events["boot"][0].fields] == ["imei"]
    assert p.source == "miui-x.yaml"
    data["behaviour"] = {"boot": [{"send": "imei"}]}   # behaviour is no longer free-form
    with pytest.raises(ProfileError, match=r"^profile miui-x.yaml: behaviour.boot: unknown key"):
        load_profile(_write(tmp_path, data))


def test_bad_transaction_code_names_the_key(tmp_path: Path) -> None:
    data = _base()
    data["iphonesubinfo"]["getDeviceId"] = "a"
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert str(err.value) == ("profile miui-x.yaml: iphonesubinfo.getDeviceId: "
                              "expected integer, got 'a'")


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    data = _base()
    data["product"]["colour"] = "red"
    with pytest.raises(ProfileError, match=r"^profile miui-x.yaml: product.colour: unknown key$"):
        load_profile(_write(tmp_path, data))
    data = _base()
    data["default_settings"]["vendor"] = {}
    with pytest.raises(ProfileError, match="default_settings.vendor: unknown key"):
        load_profile(_write(tmp_path, data))


def test_missing_and_wrong_types(tmp_path: Path) -> None:
    data = _base()
    del data["sdk"]
    with pytest.raises(ProfileError, match="sdk: missing required key"):
        load_profile(_write(tmp_path, data))
    data = _base()
    data["input_injection_blocked"] = "yes"
    with pytest.raises(ProfileError, match="input_injection_blocked: expected boolean"):
        load_profile(_write(tmp_path, data))
    data = _base()
    data["carrier"]["mcc_mnc"] = "46"
    with pytest.raises(ProfileError, match="carrier.mcc_mnc: expected 5 or 6 digits"):
        load_profile(_write(tmp_path, data))


def test_unknown_profile_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such profile"):
        load_profile("miui-v99")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="profile bad.yaml: invalid YAML"):
        load_profile(bad)
    assert issubclass(ProfileError, ValueError)


# --- inheritance ------------------------------------------------------------------------------

# What the OTA changed relative to the July build; before `extends`, miui-v5-2014-08-10.yaml was
# the July file with exactly these values replaced.
_OTA_CHANGES = {
    "name": "miui-v5-2014-08-10",
    "description": "RedMi 1S, MIUI V5 OTA (2014-08-10), Cloud Messaging opt-in (off by default), "
                   "numbers encrypted",
    "build_fingerprint": "Xiaomi/armani/armani:4.4.4/KTU84P/4.8.10:user/release-keys",
    "build_incremental": "4.8.10",
    ("props", "ro.build.date"): "Sun Aug 10 11:02:41 CST 2014",
    ("props", "ro.build.date.utc"): "1407639761",
    ("default_settings", "secure", "cloud_messaging_on"): "0",
    # the OTA describes its traffic whole (behaviour is never merged with the parent's)
    "behaviour": yaml.safe_load(
        (Path(__file__).parents[1] / "hostctl/emulator/profiles/miui-v5-2014-08-10.yaml")
        .read_text(encoding="utf-8"))["behaviour"],
    # ... and so its audit verdicts (they follow behaviour)
    "audit_expectations": yaml.safe_load(
        (Path(__file__).parents[1] / "hostctl/emulator/profiles/miui-v5-2014-08-10.yaml")
        .read_text(encoding="utf-8"))["audit_expectations"],
}


def test_ota_profile_extends_july_and_loads_as_the_flat_file_did(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "hostctl/emulator/profiles/miui-v5-2014-08-10.yaml"
            ).read_text(encoding="utf-8")
    assert yaml.safe_load(text)["extends"] == "miui-v5-2014-07"
    flat = _base()
    for key, value in _OTA_CHANGES.items():
        *parents, leaf = key if isinstance(key, tuple) else (key,)
        node = flat
        for k in parents:
            node = node[k]
        node[leaf] = value
    expected = load_profile(_write(tmp_path, flat, "miui-v5-2014-08-10.yaml"))
    inherited = load_profile("miui-v5-2014-08-10")
    for f in dataclasses.fields(inherited):
        assert getattr(inherited, f.name) == getattr(expected, f.name), f.name
    assert list(inherited.props) == list(expected.props)  # the parent's key order is kept
    # and against the parent: only name/description/source and the OTA's own changes differ
    july = load_profile("miui-v5-2014-07")
    differ = {f.name for f in dataclasses.fields(july)
              if getattr(july, f.name) != getattr(inherited, f.name)}
    assert differ == {"name", "description", "source", "build_fingerprint", "build_incremental",
                      "props", "default_settings", "behaviour", "audit_expectations"}


def test_extends_deep_merges_null_removes_and_empty_mapping_replaces(tmp_path: Path) -> None:
    _write(tmp_path, _base(), "base.yaml")
    child = {"extends": "base.yaml", "name": "child", "sdk": 21,
             "product": {"model": "HM 2"},                  # merged: name/device kept
             "props": {"ro.carrier": None, "ro.new": "1"},  # null removes
             "iphonesubinfo": {},                           # {} replaces the whole table
             "packages": {"com.android.mms": "/system/priv-app/Mms/Mms.apk"}}
    p = load_profile(_write(tmp_path, child, "child.yaml"))
    assert (p.name, p.sdk, p.product.model, p.product.device) == ("child", 21, "HM 2", "armani")
    assert "ro.carrier" not in p.props and p.props["ro.new"] == "1"
    assert p.props["ro.board.platform"] == "msm8226"
    assert p.iphonesubinfo == {}
    assert p.packages["com.android.mms"] == "/system/priv-app/Mms/Mms.apk"
    assert p.packages["com.xiaomi.xmsf"] == "/system/app/XiaomiServiceFramework.apk"
    assert p.source == "child.yaml"
    # a chain of two, the middle one by relative path from a subdirectory
    (tmp_path / "sub").mkdir()
    _write(tmp_path, {"extends": "../child.yaml", "name": "grandchild", "sim_count": 1},
           "sub/gc.yaml")
    g = load_profile(tmp_path / "sub/gc.yaml")
    assert (g.name, g.sdk, g.sim_count, g.product.model) == ("grandchild", 21, 1, "HM 2")
    # a shipped parent by name from anywhere
    s = load_profile(_write(tmp_path, {"extends": "miui-v5-2014-07", "name": "x"}, "x.yaml"))
    assert s.default_settings == load_profile("miui-v5-2014-07").default_settings


def test_extends_errors_name_the_file_and_key(tmp_path: Path) -> None:
    _write(tmp_path, {"extends": "b.yaml", "name": "a"}, "a.yaml")
    _write(tmp_path, {"extends": "a.yaml", "name": "b"}, "b.yaml")
    with pytest.raises(ProfileError, match=r"^profile b.yaml: extends: cycle a.yaml -> b.yaml "
                                           r"-> a.yaml$"):
        load_profile(tmp_path / "a.yaml")
    _write(tmp_path, {"extends": "self.yaml", "name": "s"}, "self.yaml")
    with pytest.raises(ProfileError, match="extends: cycle self.yaml -> self.yaml"):
        load_profile(tmp_path / "self.yaml")
    with pytest.raises(ProfileError, match=r"^profile noname.yaml: name: missing required key"):
        load_profile(_write(tmp_path, {"extends": "miui-v5-2014-07"}, "noname.yaml"))
    with pytest.raises(ProfileError, match=r"^profile m.yaml: extends: miui-v99: no such profile"):
        load_profile(_write(tmp_path, {"extends": "miui-v99", "name": "m"}, "m.yaml"))
    with pytest.raises(ProfileError, match=r"^profile n.yaml: extends: gone.yaml: no such file"):
        load_profile(_write(tmp_path, {"extends": "gone.yaml", "name": "n"}, "n.yaml"))
    with pytest.raises(ProfileError, match=r"^profile e.yaml: extends: expected a profile name"):
        load_profile(_write(tmp_path, {"extends": 3, "name": "e"}, "e.yaml"))
    # a bad value is blamed on the file that set it, inherited or not
    bad = _base()
    bad["iphonesubinfo"]["getDeviceId"] = "a"
    _write(tmp_path, bad, "badbase.yaml")
    with pytest.raises(ProfileError, match=r"^profile badbase.yaml: iphonesubinfo.getDeviceId: "
                                           r"expected integer, got 'a'$"):
        load_profile(_write(tmp_path, {"extends": "badbase.yaml", "name": "c"}, "c.yaml"))
    _write(tmp_path, _base(), "base.yaml")
    with pytest.raises(ProfileError, match=r"^profile d.yaml: product.colour: unknown key$"):
        load_profile(_write(tmp_path, {"extends": "base.yaml", "name": "d",
                                       "product": {"colour": "red"}}, "d.yaml"))
    with pytest.raises(ProfileError, match=r"^profile f.yaml: sdk: missing required key$"):
        load_profile(_write(tmp_path, {"extends": "base.yaml", "name": "f", "sdk": None},
                            "f.yaml"))


# --- the identity keys ------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("iphonesubinfo_reply", "maybe",
     "iphonesubinfo_reply: expected one of normal, empty, null, denied, got 'maybe'"),
    ("iphonesubinfo_args", {"getFoo": ["package"]},
     "iphonesubinfo_args.getFoo: not a method of the iphonesubinfo table"),
    ("iphonesubinfo_args", {"getDeviceId": ["pkg"]},
     ("iphonesubinfo_args.getDeviceId[0]: expected one of phone_id, sub_id, sub_id64, package, "
      "feature, i32, i64, s16, got 'pkg'")),
    ("iphonesubinfo_args", {"getDeviceId": "package"},
     "iphonesubinfo_args.getDeviceId: expected list, got 'package'"),
    ("iphonesubinfo_args", {"getDeviceId": ["phone_id", "sub_id"]},
     "iphonesubinfo_args.getDeviceId: at most one of phone_id, sub_id, sub_id64"),
    ("identity_props", {"vendor.ril.data.gsm_imsi": "{imsi[0]},{imsi[2]}"},
     ("identity_props.vendor.ril.data.gsm_imsi: {imsi[2]} names slot 2 but the profile has 2 "
      "SIM slots")),
    ("identity_props", {"x.imei": "{imei}"},
     ("identity_props.x.imei: bad template field {imei}: expected one of imei, imsi, iccid, "
      "msisdn indexed by slot, e.g. {imei[0]}")),
    ("identity_props", {"x.imei": "{imei[0].__class__}"}, "identity_props.x.imei: bad template"),
    ("identity_props", {"x.imei": "{imei[0]"}, "identity_props.x.imei: bad template '{imei[0]'"),
    ("identity_props", {"x.imei": ["{imei[0]}"]}, "identity_props.x.imei: expected string"),
    ("dumpsys_iphonesubinfo", "yes", "dumpsys_iphonesubinfo: expected boolean, got 'yes'"),
    ("adbd_features", "shell_v2", "adbd_features: expected list, got 'shell_v2'"),
    ("adbd_features", ["shell_v2", "a,b"], "adbd_features[1]: not a feature name: 'a,b'"),
    ("su", 1, "su: expected boolean, got 1"),
])
def test_new_keys_are_validated_naming_the_key(tmp_path: Path, key, value, message) -> None:
    data = _base()
    data[key] = value
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert str(err.value).startswith(f"profile miui-x.yaml: {message}")


def test_duplicate_transaction_codes_are_refused(tmp_path: Path) -> None:
    data = _base()
    data["iphonesubinfo"]["getZzz"] = 3
    with pytest.raises(ProfileError, match=r"^profile miui-x.yaml: iphonesubinfo.getZzz: code 3 "
                                           r"is already getSubscriberId's \(codes are unique\)$"):
        load_profile(_write(tmp_path, data))


def test_identity_key_defaults_and_single_slot_templates(tmp_path: Path) -> None:
    july = load_profile("miui-v5-2014-07")
    assert july.iphonesubinfo_reply == "normal" and july.identity_props is None
    assert july.dumpsys_iphonesubinfo is True and july.su is False
    # a KitKat adbd advertised no feature (adb.c fill_connect_data): no `cmd`, no shell_v2
    assert july.adbd_features == ()
    assert july.identity_prop_templates() == {
        "ro.ril.oem.imei": "{imei[0]},{imei[1]}",
        "ro.ril.miui.imei0": "{imei[0]}", "ro.ril.oem.imei1": "{imei[0]}",
        "persist.radio.imei1": "{imei[0]}", "ro.ril.miui.imei1": "{imei[1]}",
        "ro.ril.oem.imei2": "{imei[1]}", "persist.radio.imei2": "{imei[1]}"}
    assert july.iphonesubinfo_arg_kinds("getDeviceId") == ()
    data = _base()
    data.update(sim_count=1, sdk=21, identity_props={"a.b": "{imsi[1]}"})
    with pytest.raises(ProfileError, match="identity_props.a.b: {imsi\\[1\\]} names slot 1 but "
                                           "the profile has 1 SIM slot$"):
        load_profile(_write(tmp_path, data))
    data.update(identity_props={}, iphonesubinfo_needs_package=True, adbd_features=[])
    p = load_profile(_write(tmp_path, data))
    assert p.identity_prop_templates() == {} and p.adbd_features == ()
    assert p.dumpsys_iphonesubinfo is False   # default: sdk <= 19
    assert p.iphonesubinfo_arg_kinds("getDeviceId") == ("package",)
    data.update(identity_props=None)          # null: the default set
    assert load_profile(_write(tmp_path, data)).identity_prop_templates()["ro.ril.oem.imei"] == \
        "{imei[0]}"


def test_adbd_features_default_to_what_the_sdks_adbd_advertised(tmp_path: Path) -> None:
    """Without adbd_features a profile's adbd advertises what an adbd of its SDK level did
    (adb/transport.cpp per release): nothing before 7.0, shell_v2+cmd on 7.x, ..."""
    assert features_for_sdk(19) == features_for_sdk(23) == ()
    assert features_for_sdk(24) == ("shell_v2", "cmd")
    assert features_for_sdk(26) == ("shell_v2", "cmd", "stat_v2")
    assert features_for_sdk(30) == ("shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir", "sendrecv_v2")
    assert features_for_sdk(34) == DEFAULT_FEATURES
    data = _base()
    data.pop("adbd_features", None)
    data.update(sdk=29, android_release="10")
    assert load_profile(_write(tmp_path, data)).adbd_features == (
        "shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir")
