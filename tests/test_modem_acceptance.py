"""Acceptance: real modem software from Debian, unmodified, against the emulated modem's pty.

gammu and smstools' smsd are installed by `make debian-clients` (which `make test` runs). When
they are missing these tests fail, saying so: they are the proof that the emulated modem passes
for a real one, so they are never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hostctl.emulator.lab import LabConfig, LabThread


def need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        pytest.fail(f"{binary} is not installed: run `make debian-clients` (apt-get install gammu smstools)")
    return path


@pytest.fixture(scope="module")
def alab(adb_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("acceptance-home")
    with LabThread(LabConfig(adb_port=adb_port, handsets=1, home=home, with_apps=False)) as lt:
        yield lt


@pytest.fixture
def gammu(alab, tmp_path):
    exe = need("gammu")
    rc = tmp_path / "gammurc"
    rc.write_text(
        f"[gammu]\ndevice = {alab.lab.modem_info()['pty']}\nconnection = at\n"
        f"logfile = {tmp_path / 'gammu.log'}\nlogformat = textall\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [exe, "-c", str(rc), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        assert r.returncode == 0, f"gammu {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}"
        return r

    return run


def test_gammu_identify_shows_manufacturer_model_imei_imsi(alab, gammu):
    out = gammu("identify").stdout
    info = alab.lab.modem_info()
    fields = dict(re.findall(r"^(\w[\w ]*?)\s*: (.*)$", out, re.M))
    assert fields["Manufacturer"] == "hostctl"
    assert "EM-GSM1" in fields["Model"]
    assert fields["IMEI"] == info["imei"]
    assert fields["SIM IMSI"] == info["imsi"]


def test_gammu_sends_an_sms_the_handset_has_in_its_inbox(alab, gammu, adb):
    lh = alab.lab.handsets[0]
    text = "gammu says hello {ok} 1+1=2"
    r = gammu("sendsms", "TEXT", lh.identity.sims[0].msisdn, "-text", text)
    assert "OK, message reference=" in r.stdout + r.stderr
    r = adb("-s", lh.serial, "shell", "content", "query", "--uri", "content://sms/inbox")
    rows = r.stdout.decode()
    assert f"address={alab.lab.modem_info()['number']}," in rows and f"body={text}," in rows, rows


def test_gammu_getallsms_lists_what_a_handset_sent(alab, gammu):
    lh = alab.lab.handsets[0]
    text = "from the handset, € and [brackets]"
    lh.send_sms(alab.lab.modem_info()["number"], text)
    out = gammu("getallsms").stdout
    block = [b for b in out.split("\n\n") if text in b or f'"{lh.identity.sims[0].msisdn}"' in b]
    assert any(f'Remote number        : "{lh.identity.sims[0].msisdn}"' in b for b in block), out
    assert text in out


def test_smsd_sends_one_and_receives_one(alab, tmp_path):
    exe = need("smsd")
    lh = alab.lab.handsets[0]
    info = alab.lab.modem_info()
    spool = {name: tmp_path / name for name in ("outgoing", "checked", "incoming", "failed", "sent")}
    for d in spool.values():
        d.mkdir()
    conf = tmp_path / "smsd.conf"
    conf.write_text(
        f"devices = GSM1\noutgoing = {spool['outgoing']}\nchecked = {spool['checked']}\n"
        f"incoming = {spool['incoming']}\nfailed = {spool['failed']}\nsent = {spool['sent']}\n"
        f"logfile = {tmp_path / 'smsd.log'}\nloglevel = 7\ninfofile = {tmp_path / 'smsd.working'}\n"
        f"pidfile = {tmp_path / 'smsd.pid'}\ndelaytime = 1\ndelaytime_mainprocess = 1\n\n"
        f"[GSM1]\ndevice = {info['pty']}\nincoming = yes\nbaudrate = 115200\n"
        # smsd reads +CPMS's first storage; gammu (earlier in this module) leaves it at "ME" while
        # new messages land in "SM", exactly as on a real modem, so say where to look
        'init = AT+CPMS="SM","SM","SM"\n'
    )
    handset_number = lh.identity.sims[0].msisdn
    (spool["outgoing"] / "hello").write_text(f"To: {handset_number.lstrip('+')}\n\nsmsd to handset\n")
    lh.send_sms(info["number"], "handset to smsd")
    proc = subprocess.Popen(
        [exe, "-t", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if list(spool["sent"].iterdir()) and list(spool["incoming"].iterdir()):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # smsd and its modem handler, our process group
        proc.wait(20)
    log = (tmp_path / "smsd.log").read_text(errors="replace") if (tmp_path / "smsd.log").exists() else ""
    assert [p.name for p in spool["sent"].iterdir()] == ["hello"], log[-3000:]
    assert not list(spool["failed"].iterdir()), log[-3000:]
    # smsd writes ISO-8859-15; earlier tests left messages in the modem too (it takes them all)
    incoming = [p.read_bytes().decode("iso-8859-15") for p in spool["incoming"].iterdir()]
    mine = [m for m in incoming if m.endswith("\n\nhandset to smsd")]
    assert len(mine) == 1, log[-3000:]
    assert f"From: {lh.identity.sims[0].msisdn.lstrip('+')}\n" in mine[0]
    assert f"IMSI: {info['imsi']}" in mine[0]
    rows = lh.handset.sms_query("content://sms/inbox")[1]
    assert any("smsd to handset" in str(r) for r in rows)
