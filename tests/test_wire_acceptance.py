"""Issue 5's acceptance on the emulated lab, through the real paths: the lab's wire tap as a
capture source, `hostctl trace` (Frida over adb) for the TLS plaintext, and wire-check over both.

* miui-v5-2014-07: the boot report carries the IMEI and the phone number readable inside TLS
  (agent plaintext), while the TLS flows on the wire show nothing.
* miui-v5-2014-08-10 with Cloud Messaging on: the phone numbers appear only encrypted, and the
  fixed-IV encryption is flagged deterministic (linkable), attributed through the EVP hooks.
"""

from __future__ import annotations

import base64
import json
import os
import threading

import pytest
from conftest import wait_for

from hostctl.capture import LabSource
from hostctl.device import AdbAddress, Handset
from hostctl.emulator.lab import LabConfig, LabThread, wait_for_device
from hostctl.testbed import testbed_for_lab as tb_for_lab
from hostctl.trace import TraceOptions, Tracer, open_device
from hostctl.wire.check import wire_check
from hostctl.wire.identifiers import Identifier


def _identifiers(lab):
    tb = tb_for_lab(lab)
    out = []
    for h in tb.handsets:
        for s in h.sims:
            out += [
                Identifier("msisdn", s.number, f"{h.label} number{s.slot}"),
                Identifier("imei", s.imei, f"{h.label} imei{s.slot}"),
                Identifier("imsi", s.imsi, f"{h.label} imsi{s.slot}"),
            ]
    return out


class _Recording:
    """Capture (lab tap) and trace (Frida agent) of one handset, as the audit runs them."""

    def __init__(self, lab_thread, label, out, *, evp=False):
        lab = lab_thread.lab
        self.lh = lab.find(label)
        self.handset = Handset(self.lh.serial, AdbAddress("127.0.0.1", lab.adb_port))
        self.out = out
        self.capture = LabSource(home=lab.home)
        self.tracer = Tracer(
            open_device(self.lh.serial),
            out / "trace",
            serial=self.lh.serial,
            options=TraceOptions(apps=("com.android.mms",), java=False, evp=evp),
        )
        self.stop_event = threading.Event()

    def __enter__(self):
        self.capture.start(self.handset, self.out / "wire.pcapng")
        self.tracer.start()
        self.thread = threading.Thread(target=self.tracer.run, kwargs={"stop": self.stop_event}, daemon=True)
        self.thread.start()
        return self

    def ssl_events(self):
        path = self.out / "trace" / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if '"kind": "ssl"' in x or '"kind":"ssl"' in x]

    @staticmethod
    def payload(event):
        return base64.b64decode((event.get("data") or {}).get("base64") or "")

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(30)
        self.tracer.stop()
        self.result = self.capture.stop()


@pytest.fixture(scope="module")
def lab07(adb_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("lab07")
    with LabThread(
        LabConfig(
            adb_port=adb_port,
            handsets=1,
            profile="miui-v5-2014-07",
            home=home,
            modem=False,
            relay=False,
            consoles=False,
        )
    ) as lt:
        yield lt


@pytest.fixture(scope="module")
def lab0810(adb_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("lab0810")
    with LabThread(
        LabConfig(
            adb_port=adb_port,
            handsets=2,
            profile="miui-v5-2014-08-10",
            home=home,
            modem=False,
            relay=False,
            consoles=False,
        )
    ) as lt:
        yield lt


def _shell(h: Handset, cmd: str) -> str:
    r = h.shell(cmd, timeout=20)
    assert r.exit_code == 0, (cmd, r.output)
    return r.output


def test_2014_07_boot_report_is_readable_inside_tls(lab07, adb_port, tmp_path):
    lt = lab07
    lh = lt.lab.handsets[0]
    h = Handset(lh.serial, AdbAddress("127.0.0.1", adb_port))
    # the boot report waits for connectivity: boot in airplane mode, attach, then go online
    _shell(h, "settings put global airplane_mode_on 1 && am broadcast -a android.intent.action.AIRPLANE_MODE")
    lt.call(lh.power_off())
    lt.call(lh.power_on())
    wait_for_device(adb_port, lh.serial, 30)
    with _Recording(lt, "hs1", tmp_path) as rec:
        wait_for(lambda: lh.apps.get("com.android.mms") and lh.apps["com.android.mms"].alive, 30)
        before = len(lh.emitted)
        _shell(h, "settings put global airplane_mode_on 0 && am broadcast -a android.intent.action.AIRPLANE_MODE")
        wait_for(lambda: any(r.event == "boot" for r in lh.emitted[before:]), 30)
        boot = [r for r in lh.emitted[before:] if r.event == "boot" and r.tls]
        wait_for(
            lambda: (
                sum(b"/device/report" in rec.payload(e) for e in rec.ssl_events() if e.get("direction") == "out")
                >= len(boot)
            ),
            30,
            interval=0.1,
        )
    report = wire_check(
        [rec.result.path], _identifiers(lt.lab), agent_events=[tmp_path / "trace" / "events.jsonl"], hash_budget=0
    )
    ident = {i["identifier"]: i for i in report["identifiers"]}
    sim = lh.handset.identity.sims[0]
    for name in ("hs1 imei0", "hs1 number0"):
        assert ident[name]["verdict"] == "in-clear", ident[name]
        # in the agent's plaintext, and on the wire decrypted with the secrets the agent extracted
        assert ident[name]["layers"] == ["tls-decrypted", "tls-plaintext"], ident[name]
    decrypted = [f for f in report["findings"] if f["value"] in (sim.imei, sim.msisdn) and f["source"] == "wire"]
    assert decrypted and all(f["layer"] == "tls-decrypted" and f["record"] >= 1 for f in decrypted)
    readable = [f for f in report["findings"] if f["value"] in (sim.imei, sim.msisdn) and f["source"] == "agent"]
    assert readable
    assert {(f["flow"], f["value"]) for f in decrypted} >= {
        (f["flow"], f["value"]) for f in readable if f["direction"] == "out"
    }
    on_account = {f["value"] for f in readable if f["host"] == "api.account.xiaomi.com"}
    assert on_account == {sim.imei, sim.msisdn}, "the boot report to the account host carries both"
    assert all(f["flow"] is not None for f in readable), "agent findings not matched to a wire flow"
    flows = {f["id"]: f for f in report["flows"]}
    for f in readable:
        fl = flows[f["flow"]]
        assert fl["protocol"]["name"] == "tls" and fl["protocol"]["sni"] == f["host"]
        assert fl["protocol"]["version"] in ("TLS 1.2", "TLS 1.3")
    assert not [
        f
        for f in report["findings"]
        if f["layer"] == "wire" and flows.get(f["flow"], {}).get("protocol", {}).get("name") == "tls"
    ], "TLS ciphertext should hide everything"


def test_2014_08_10_numbers_only_encrypted_and_fixed_iv_is_deterministic(lab0810, adb_port, tmp_path):
    from hostctl.cloud import cm_set, presence

    lt = lab0810
    hs1, hs2 = lt.lab.handsets
    h1 = Handset(hs1.serial, AdbAddress("127.0.0.1", adb_port))
    h2 = Handset(hs2.serial, AdbAddress("127.0.0.1", adb_port))
    cm_set(h2, True, sim=1)
    with _Recording(lt, "hs1", tmp_path, evp=True):
        cm_set(h1, True, sim=1)  # activation + bind: the number as the build encrypts it
        peer = hs2.handset.identity.sims[0].msisdn
        presence(h1, peer)  # two look-ups of one number: the same ciphertext twice
        presence(h1, peer)
    report = wire_check(
        [tmp_path / "wire.pcapng"],
        _identifiers(lt.lab),
        agent_events=[tmp_path / "trace" / "events.jsonl"],
        hash_budget=0,
    )
    ident = {i["identifier"]: i for i in report["identifiers"]}
    for name in ("hs1 number0", "hs2 number0"):
        assert ident[name]["findings"] == 0, ident[name]
        assert ident[name]["verdict"] == "encrypted-deterministic", ident[name]
    det = [d for d in report["deterministic"] if d["identifier"] == "hs2 number0"]
    assert det and det[0]["sessions"] >= 1
    assert any(c["iv_reused"] and "hs2 number0" in c["identifiers"] for c in report["cipher_calls"])
    assert os.path.getsize(tmp_path / "wire.pcapng") > 0
