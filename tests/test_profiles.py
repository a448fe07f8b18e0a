"""Firmware profiles: the shipped ones load, bad files are rejected naming the key."""

from pathlib import Path

import pytest
import yaml

from hostctl.emulator.profiles import ProfileError, list_profiles, load_profile


def test_shipped_profiles_are_listed() -> None:
    assert list_profiles() == ["miui-v5-2014-07", "miui-v5-2014-08-10"]


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
    assert p.behaviour == {}


def test_ota_build_has_cloud_messaging_off() -> None:
    p = load_profile("miui-v5-2014-08-10")
    assert p.default_settings["secure"]["cloud_messaging_on"] == "0"
    assert p.cloud_messaging_default is False


def _write(tmp_path: Path, data: dict, name: str = "miui-x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _base() -> dict:
    return yaml.safe_load(
        (Path(__file__).parents[1] / "hostctl/emulator/profiles/miui-v5-2014-07.yaml")
        .read_text(encoding="utf-8"))


def test_load_by_path_and_behaviour_is_kept(tmp_path: Path) -> None:
    data = _base()
    data["behaviour"] = {"boot": [{"send": "imei"}]}
    p = load_profile(_write(tmp_path, data))
    assert p.behaviour == {"boot": [{"send": "imei"}]}
    assert p.source == "miui-x.yaml"


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
