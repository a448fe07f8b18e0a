"""`hostctl identity` on every firmware profile: exactly the handset's identity, right sources.

Each profile boots a one-handset lab on its own adb server (the lab starts it and kills it by port),
and the CLI runs in-process against it with `--adb` and no `-s` (the only device is chosen).
"""

from __future__ import annotations

import io
import json
import os

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.device import AdbAddress, Handset, InputInjection, RootStatus
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import free_port

IDS = ("imei", "imsi", "iccid", "msisdn")


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
    return main(list(argv), Environment(stdout=out, stderr=err, vars=env)), out.getvalue(), err.getvalue()


def boot(profile: str, tmp_path) -> LabThread:
    return LabThread(
        LabConfig(adb_port=free_port(), handsets=1, profile=profile, with_apps=False, home=tmp_path / "home")
    )


def msim(code: int, name: str) -> str:
    return f"service_call:iphonesubinfo_msim:{code}:{name}"


def sub(code: int, name: str) -> str:
    return f"service_call:iphonesubinfo:{code}:{name}"


# profile -> per slot, the source each identifier must come from (None: must stay unknown)
CASES = {
    "miui-v5-2014-07": [
        {
            "imei": msim(1, "getDeviceId"),
            "imsi": msim(3, "getSubscriberId"),
            "iccid": msim(4, "getIccSerialNumber"),
            "msisdn": msim(5, "getLine1Number"),
        }
    ]
    * 2,
    "android-4.4-dumpsys-only": [{"imei": "dumpsys:iphonesubinfo", "imsi": None, "iccid": None, "msisdn": None}],
    "miui-7-android-5.0": [
        {
            "imei": sub(2, "getDeviceIdForSubscriber"),
            "imsi": sub(6, "getSubscriberIdForSubscriber"),
            "iccid": sub(10, "getIccSerialNumberForSubscriber"),
            "msisdn": sub(12, "getLine1NumberForSubscriber"),
        }
    ]
    * 2,
    "miui-12-android-11": [
        {
            "imei": sub(4, "getDeviceIdForPhone"),
            "imsi": sub(10, "getSubscriberIdForSubscriber"),
            "iccid": sub(14, "getIccSerialNumberForSubscriber"),
            "msisdn": sub(16, "getLine1NumberForSubscriber"),
        }
    ]
    * 2,
    "miui-12-mtk-dual": [
        {
            "imei": "prop:ro.ril.miui.imei0",
            "imsi": "prop:vendor.ril.data.gsm_imsi",
            "iccid": "prop:vendor.ril.iccid.sim1",
            "msisdn": None,
        },
        {
            "imei": "prop:ro.ril.miui.imei1",
            "imsi": "prop:vendor.ril.data.gsm_imsi",
            "iccid": "prop:vendor.ril.iccid.sim2",
            "msisdn": None,
        },
    ],
}


@pytest.mark.parametrize("profile", sorted(CASES))
def test_identity_json_is_exactly_the_handsets_identity(profile, tmp_path):
    with boot(profile, tmp_path) as lt:
        lh = lt.lab.handsets[0]
        st, out, err = cli("--adb", f"127.0.0.1:{lt.config.adb_port}", "identity", "--json")
        assert st == ExitStatus.OK, err
        doc = json.loads(out)
        assert doc["serial"] == lh.serial and len(doc["slots"]) == len(CASES[profile])
        for slot, want in zip(doc["slots"], CASES[profile]):
            sim = lh.identity.sims[slot["slot"]]
            for key in IDS:
                if want[key] is None:
                    assert slot[key] is None and key not in slot["sources"], (key, slot)
                    assert any(a["field"] == key and not a["ok"] for a in doc["attempts"])
                else:
                    assert slot[key] == getattr(sim, key), key
                    assert slot["sources"][key] == want[key], key
                    assert slot["valid"][key] is True, key
            assert (slot["sim_operator"], slot["mcc_mnc"]) == (sim.operator_name, sim.mcc_mnc)


def test_identity_fails_clearly_where_nothing_works(tmp_path):
    with boot("miui-12.5-shell-denied", tmp_path) as lt:
        st, out, err = cli("--adb", f"127.0.0.1:{lt.config.adb_port}", "identity", "--json")
        assert st == ExitStatus.ERROR
        assert "no identifier found" in err and "Traceback" not in err
        for tried in ("service_call", "SecurityException", "prop", "dumpsys"):
            assert tried in err, tried
        doc = json.loads(out)  # the evidence is still printed
        assert all(s[k] is None for s in doc["slots"] for k in IDS)
        strategies = {a["strategy"] for a in doc["attempts"] if not a["ok"]}
        assert strategies == {"service_call", "prop", "dumpsys"}
        st, out, err = cli("--adb", f"127.0.0.1:{lt.config.adb_port}", "identity")
        assert st == ExitStatus.ERROR and out == "" and "no identifier found" in err


def test_strategies_can_be_chosen_and_unknown_ones_are_usage_errors(tmp_path):
    with boot("miui-12-mtk-dual", tmp_path) as lt:
        adb = f"127.0.0.1:{lt.config.adb_port}"
        st, out, err = cli("--adb", adb, "identity", "--strategies", "service_call", "--json")
        assert st == ExitStatus.ERROR and "empty string" in err  # MediaTek's dotted replies
        st, out, err = cli("--adb", adb, "identity", "--strategies", "prop", "--json")
        assert st == ExitStatus.OK, err
        assert {a["strategy"] for a in json.loads(out)["attempts"]} == {"prop"}
        st, _, err = cli("--adb", adb, "identity", "--strategies", "magic")
        assert st == ExitStatus.USAGE and "unknown strategies" in err


def test_info_detects_miui_input_injection_block(tmp_path):
    with boot("miui-12-android-11", tmp_path) as lt:
        st, out, err = cli("--adb", f"127.0.0.1:{lt.config.adb_port}", "info", "--json")
        assert st == ExitStatus.OK, err
        doc = json.loads(out)
        assert doc["input_injection"] == "blocked"
        assert "USB debugging (Security settings)" in doc["input_injection_hint"]
        assert (doc["sdk"], doc["android_release"], doc["miui_version_name"]) == (30, "11", "V12")


def test_root_detection_with_su(tmp_path):
    prof = tmp_path / "rooted.yaml"
    prof.write_text("extends: miui-v5-2014-07\nname: rooted-v5\nsu: true\n")
    with boot(str(prof), tmp_path) as lt:
        h = Handset(lt.lab.handsets[0].serial, AdbAddress("127.0.0.1", lt.config.adb_port))
        assert h.root_status() == (RootStatus.SU_PRESENT, "/system/xbin/su")
        assert h.root_status(probe_su=True) == (RootStatus.SU, "/system/xbin/su")
        assert h.info().input_injection is InputInjection.ALLOWED


def test_shell_v1_path_on_a_kitkat_adbd(tmp_path):
    # KitKat's adbd has no shell_v2: exit codes come from a marker, output through a pty (CRLF)
    with boot("android-4.4-dumpsys-only", tmp_path) as lt:
        h = Handset(lt.lab.handsets[0].serial, AdbAddress("127.0.0.1", lt.config.adb_port))
        assert h.features() == frozenset()
        r = h.shell("echo one; echo two; exit 3")
        assert (r.exit_code, r.stdout, r.stderr) == (3, "one\ntwo\n", "")
        assert [x.exit_code for x in h.batch(["true", "false", "echo x"])] == [0, 1, 0]
