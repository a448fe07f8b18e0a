"""Capture sources, each through the path a real handset would take, and the emulated tools they use.

- the emulated ``tcpdump``/``timeout``/``kill`` in the Android shell (transcripts, with synthetic
  connections fed to the handset's tap);
- ``hostctl.capture`` sources on an emulated lab through the real adb server: lab (control
  channel), tcpdump (root, kill by pid, adb sync pull), PCAPdroid (app API, consent taps, pcap and
  pcapng with its custom blocks), host:lo (dumpcap/tcpdump stopped by SIGINT);
- the CLI (``hostctl capture``) in-process;
- clear errors: unknown source, no root, no PCAPdroid, not an emulated handset, the lab gone
  mid-capture (the file kept).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from test_shell_kit import MemoryIO

from hostctl import capture as cap
from hostctl.cli import Environment, main
from hostctl.device import Handset
from hostctl.emulator.cloudmsg import ACCOUNT_HOST
from hostctl.emulator.handset import VirtualHandset
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.emulator.profiles import load_profile
from hostctl.emulator.shell import AndroidShell
from hostctl.emulator.wiretap import Connection, Route, WireTap, register
from hostctl.wire.pcapread import CaptureReader
from tests.conftest import free_port
from tests.conftest import wait_for as _wait_for

TSHARK = "/usr/bin/tshark"


def wait_for(pred, timeout=20.0):
    return _wait_for(pred, timeout, interval=0.05)


def rooted_profile(directory: Path, *, sdk: int = 19) -> str:
    path = directory / "rooted.yaml"
    path.write_text(f"extends: miui-v5-2014-07\nname: h4-rooted-api{sdk}\nsu: true\nsdk: {sdk}\n")
    return str(path)


def sni(path: Path) -> set[str]:
    res = subprocess.run(
        [
            TSHARK,
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "tls.handshake.extensions_server_name",
            "-Y",
            "tls.handshake.type == 1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return {ln for ln in res.stdout.splitlines() if ln}


def tshark_fields(path: Path, *names: str, display: str | None = None) -> list[list[str]]:
    args = [TSHARK, "-r", str(path), "-T", "fields"] + [a for n in names for a in ("-e", n)]
    if display:
        args += ["-Y", display]
    res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [ln.split("\t") for ln in res.stdout.splitlines() if ln.strip()]


# --- the emulated tcpdump, timeout and kill ------------------------------------------------------


@pytest.fixture
def rooted(tmp_path):
    h = VirtualHandset(label="hs1", profile=load_profile(rooted_profile(tmp_path)), state_dir=tmp_path / "state")
    binary = h.fs.root / "system/xbin/tcpdump"
    binary.write_bytes(b"\x7fELF")
    tap = WireTap("hs1", "10.64.0.1", [])
    register(h, tap)
    yield h, tap
    register(h, None)
    h.close()


def feed(tap: WireTap, n_bytes: int = 3000, port: int = 40000) -> Connection:
    """One connection to the account host with data both ways, as the relay would report it."""
    conn = Connection(
        len(tap.recent) + len(tap.open) + 1,
        "hs1",
        Route(ACCOUNT_HOST, ("127.0.0.1", 1), 443),
        ("10.64.0.1", port),
        ("127.0.0.1", port),
        1,
        0.0,
    )
    tap.open[conn.id] = conn
    tap._fanout("opened", conn)
    tap._fanout("data", conn, "c2s", b"\x16\x03\x01" + b"q" * n_bytes)
    tap._fanout("data", conn, "s2c", b"\x16\x03\x03" + b"r" * n_bytes)
    return conn


async def _shell(h, command: str):
    out = MemoryIO()
    rc = await AndroidShell(h).run(command, out)
    return rc, out.stdout.decode(), out.stderr.decode()


def run_with_traffic(h, tap, command: str, traffic=feed):
    async def go():
        task = asyncio.ensure_future(_shell(h, command))
        for _ in range(500):
            if tap.sinks or task.done():
                break
            await asyncio.sleep(0.01)
        if tap.sinks:
            traffic(tap)
        return await asyncio.wait_for(task, 15)

    return asyncio.run(go())


def test_tcpdump_is_not_found_without_its_binary(tmp_path):
    h = VirtualHandset(label="hs1", profile=load_profile("miui-v5-2014-08-10"), state_dir=tmp_path / "s")
    try:
        assert asyncio.run(_shell(h, "tcpdump -i any -w /data/local/tmp/x.pcap")) == (
            127,
            "",
            "/system/bin/sh: tcpdump: inaccessible or not found\n",
        )
        assert asyncio.run(_shell(h, "timeout 1 true"))[0] == 127  # Android 4.4 has no timeout
    finally:
        h.close()


def test_tcpdump_answers_like_tcpdump(rooted):
    h, _ = rooted
    rc, out, err = asyncio.run(_shell(h, "tcpdump -i any -w /data/local/tmp/x.pcap"))
    assert (rc, err) == (
        1,
        "tcpdump: any: You don't have permission to capture on that device\n(socket: Operation not permitted)\n",
    )
    rc, out, err = asyncio.run(_shell(h, "su -c 'tcpdump -k'"))
    assert rc == 1 and err.startswith("tcpdump: invalid option -- 'k'\ntcpdump version 4.9.3\n")
    assert "Usage: tcpdump [-aAbdDefhHIJKlLnNOpqStuUvxX#]" in err
    assert asyncio.run(_shell(h, "su -c 'tcpdump -i'"))[2].startswith("tcpdump: option requires an argument -- 'i'")
    assert asyncio.run(_shell(h, "su -c 'tcpdump --version'")) == (
        0,
        "tcpdump version 4.9.3\nlibpcap version 1.9.1 (with TPACKET_V3)\n",
        "",
    )
    assert asyncio.run(_shell(h, "su -c 'tcpdump -i eth9'")) == (
        1,
        "",
        "tcpdump: eth9: No such device exists\n(SIOCGIFHWADDR: No such device)\n",
    )
    assert asyncio.run(_shell(h, "su -c 'tcpdump -c x'"))[2] == "tcpdump: invalid packet count x\n"
    assert (
        asyncio.run(_shell(h, "su -c 'tcpdump -i any tcp portt 443'"))[2]
        == "tcpdump: syntax error in filter expression: syntax error\n"
    )
    assert (
        asyncio.run(_shell(h, "su -c 'tcpdump -w /system/x.pcap'"))[2]
        == "tcpdump: /system/x.pcap: Read-only file system\n"
    )


def test_tcpdump_writes_a_linux_cooked_pcap_and_stops_after_count(rooted, tmp_path):
    h, tap = rooted
    rc, out, err = run_with_traffic(h, tap, "su -c 'tcpdump -i any -s 0 -U -c 5 -w /data/local/tmp/t.pcap'")
    assert rc == 0 and out == ""
    assert err.startswith("tcpdump: listening on any, link-type LINUX_SLL (Linux cooked), capture size 262144 bytes\n")
    assert err.endswith("5 packets captured\n5 packets received by filter\n0 packets dropped by kernel\n")
    path = h.fs.host_path("/data/local/tmp/t.pcap")
    with CaptureReader(path) as reader:
        packets = list(reader)
        assert (reader.stats["format"], reader.stats["interfaces"][0]["linktype"]) == ("pcap", 113)
    assert len(packets) == 5
    rows = tshark_fields(path, "sll.pkttype", "ip.src", "tcp.dstport", "tcp.flags.syn")
    assert rows[0] == ["4", "10.64.0.1", "443", "1"]  # outgoing SYN from the handset
    assert h.pids_of("tcpdump") == []  # the process is gone with it


def test_tcpdump_prints_packets_without_w_and_filters(rooted):
    h, tap = rooted

    def two_connections(t):
        feed(t, 10, port=40001)
        feed(t, 10, port=40002)

    rc, out, err = run_with_traffic(h, tap, "su -c 'tcpdump -n -c 3 port 40002'", two_connections)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 3 and all("10.64.0.1.40002" in ln for ln in lines)
    assert lines[0].split(" ", 1)[1].startswith("IP 10.64.0.1.40002 > 198.18.0.10.443: Flags [S], seq ")
    assert err.startswith("tcpdump: verbose output suppressed, use -v or -vv for full protocol decode\n")


def test_kill_by_pid_ends_tcpdump_and_timeout_exits_124(rooted):
    h, tap = rooted

    async def go():
        task = asyncio.ensure_future(_shell(h, "su -c 'tcpdump -i any -w /data/local/tmp/k.pcap'"))
        for _ in range(500):
            if tap.sinks:
                break
            await asyncio.sleep(0.01)
        feed(tap)
        rc, pids, _ = await _shell(h, "pidof tcpdump")
        pid = int(pids.strip())
        denied = await _shell(h, f"kill -2 {pid}")  # the shell user may not
        missing = await _shell(h, "su -c 'kill -2 99999'")
        app = await _shell(h, "su -c 'kill 712'")  # system_server: not emulated
        killed = await _shell(h, f"su -c 'kill -2 {pid}'")
        return denied, missing, app, killed, await asyncio.wait_for(task, 10)

    denied, missing, app, killed, result = asyncio.run(go())
    assert denied[0] == 1 and "Operation not permitted" in denied[2]
    assert missing == (1, "", "/system/bin/sh: kill: 99999: No such process\n")  # mksh's builtin
    assert app[0] == 1
    assert killed == (0, "", "")
    assert result[0] == 0 and "packets captured" in result[2]
    assert h.pids_of("tcpdump") == []
    rc, _, err = asyncio.run(_shell(h, "su -c 'timeout 0.3 tcpdump -i any -w /dev/null'"))
    assert rc == 124 and "3 packets captured" in err  # the handshake of the connection still open
    assert asyncio.run(_shell(h, "su -c 'timeout 5 true'"))[0] == 0
    assert asyncio.run(_shell(h, "su -c 'timeout x true'")) == (125, "", "timeout: Not a number 'x'\n")  # toybox


# --- the sources through the real adb path -------------------------------------------------------


@pytest.fixture(scope="module")
def rlab(tmp_path_factory):
    """One rooted Android 5.0 handset (so tcpdump and PCAPdroid both apply), apps running."""
    home = tmp_path_factory.mktemp("caplab")
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            modem=False,
            relay=False,
            consoles=False,
            profile=rooted_profile(home, sdk=21),
            home=home,
        )
    ) as lt:
        yield lt


def handset(lt) -> Handset:
    return Handset(lt.lab.handsets[0].serial, f"127.0.0.1:{lt.lab.adb_port}")


def contact_added(lt, number="+8613800000001") -> None:
    """The 2014-07 build reports a new contact to api.account.xiaomi.com: one TLS connection."""
    lh = lt.lab.handsets[0]
    before = len(lh.tap.recent)

    async def add():
        lh.add_contact(number)

    lt.call(add())
    wait_for(lambda: any(c.route.host == ACCOUNT_HOST for c in list(lh.tap.recent)[before:]))


def test_lab_source_through_the_control_channel(rlab, tmp_path):
    src = cap.LabSource(home=rlab.lab.home)
    with src:
        src.start(handset(rlab), tmp_path / "lab.pcapng")
        contact_added(rlab)
    r = src.result
    assert (r.source, r.format, r.linktypes) == ("lab", "pcapng", [1])
    assert r.packets > 0 and r.bytes == (tmp_path / "lab.pcapng").stat().st_size
    assert ACCOUNT_HOST in sni(r.path)
    assert any("10.64.0.1" in n and "api.account.xiaomi.com=198.18.0.10" in n for n in r.notes)


def test_tcpdump_source_on_the_rooted_handset(rlab, tmp_path):
    src = cap.TcpdumpSource()
    src.start(handset(rlab), tmp_path / "td.pcap")
    contact_added(rlab)
    r = src.stop()
    assert (r.source, r.format, r.linktypes) == ("tcpdump", "pcap", [113]) and r.packets > 0
    assert ACCOUNT_HOST in sni(r.path)
    assert r.device_path.startswith("/data/local/tmp/hostctl-") and r.details["pid"]
    assert any(n.startswith("tcpdump pid ") and "tcpdump -i any -s 0 -U -w" in n for n in r.notes)
    assert any("packets captured" in n for n in r.notes)
    h = handset(rlab)
    assert not h.shell(f"ls {r.device_path}").ok  # pulled, then removed from the handset
    assert h.shell("pidof tcpdump").stdout.strip() == ""  # ended by its pid


def test_pcapdroid_source_pcap_then_pcapng_with_its_custom_blocks(rlab, tmp_path):
    h = handset(rlab)
    src = cap.PcapdroidSource()
    src.start(h, tmp_path / "pd.pcap")
    contact_added(rlab)
    r = src.stop()
    assert (r.source, r.format, r.linktypes) == ("pcapdroid", "pcap", [101]) and r.packets > 0
    assert r.device_path.startswith("/sdcard/Download/PCAPdroid/hostctl-")
    assert any("VPN consent" in n for n in r.notes)  # first use: Android asked once
    assert ACCOUNT_HOST in sni(r.path)
    assert {row[0] for row in tshark_fields(r.path, "ip.src", display="tcp.dstport == 443")} == {"10.215.173.1"}
    # second capture: no VPN question any more; pcapng with PCAPdroid's UID blocks and comments
    src = cap.PcapdroidSource(pcapng=True)
    src.start(h, tmp_path / "pd.pcapng")
    contact_added(rlab, "+8613800000002")
    r2 = src.stop()
    assert not any("VPN consent" in n for n in r2.notes)
    assert (r2.format, r2.linktypes) == ("pcapng", [101]) and r2.packets > 0
    assert r2.details["skipped_blocks"] == {str(0xBAD): 1}  # one app: one UID mapping block
    assert ACCOUNT_HOST in sni(r2.path)
    uid = rlab.lab.handsets[0].handset.processes()
    mms_uid = next(p.uid for p in uid if p.name == "com.android.mms")
    assert {row[0] for row in tshark_fields(r2.path, "frame.comment")} == {f"u-{mms_uid}"}
    log = h.shell("logcat -d -s CaptureCtrl:* CaptureService:*").stdout
    assert "Starting capture" in log and "Stopping capture" in log


def test_cli_capture_json_and_auto_source(rlab, tmp_path):
    out_file = tmp_path / "cli.pcapng"
    stdout, stderr = io.StringIO(), io.StringIO()
    env = Environment(
        stdout=stdout,
        stderr=stderr,
        vars=dict(os.environ, ANDROID_ADB_SERVER_PORT=str(rlab.lab.adb_port), HOSTCTL_HOME=str(rlab.lab.home)),
    )
    rc = main(["capture", "-s", rlab.lab.handsets[0].serial, "--out", str(out_file), "--duration", "1", "--json"], env)
    assert rc == 0, stderr.getvalue()
    doc = json.loads(stdout.getvalue())
    assert doc["ok"] and doc["source"] == "lab" and doc["path"] == str(out_file) and doc["format"] == "pcapng"
    assert doc["notes"][0].startswith("source lab: ")
    assert "capturing" in stderr.getvalue()
    stdout, stderr = io.StringIO(), io.StringIO()
    env = Environment(stdout=stdout, stderr=stderr, vars=env.vars)
    rc = main(
        ["capture", "-s", rlab.lab.handsets[0].serial, "--out", str(out_file), "--source", "lab", "--duration", "0.5"],
        env,
    )
    assert rc == 0 and stdout.getvalue().startswith(f"{out_file}: ")
    assert "pcapng (link type 1), source lab" in stdout.getvalue().splitlines()[0]
    stdout, stderr = io.StringIO(), io.StringIO()
    env = Environment(stdout=stdout, stderr=stderr, vars=env.vars)
    rc = main(["capture", "-s", rlab.lab.handsets[0].serial, "--out", str(out_file), "--source", "carrier-pigeon"], env)
    assert rc == 2 and "unknown capture source 'carrier-pigeon'" in stderr.getvalue()
    rc = main(
        [
            "capture",
            "-s",
            rlab.lab.handsets[0].serial,
            "--out",
            str(tmp_path / "no" / "x.pcap"),
            "--source",
            "lab",
            "--duration",
            "1",
        ],
        env,
    )
    assert rc == 2 and "no directory" in stderr.getvalue()


# --- clear errors ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A stock (unrooted, Android 4.4) handset without app processes."""
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            relay=False,
            consoles=False,
            home=tmp_path_factory.mktemp("plain"),
        )
    ) as lt:
        yield lt


def test_tcpdump_on_an_unrooted_handset_is_a_clear_error(plain, tmp_path):
    with pytest.raises(cap.CaptureError, match="is not rooted .*tcpdump needs root") as err:
        cap.TcpdumpSource().start(handset(plain), tmp_path / "x.pcap")
    assert err.value.kind == "not-runnable" and err.value.result is None


def test_pcapdroid_missing_is_a_clear_error(plain, tmp_path):
    with pytest.raises(
        cap.CaptureError,
        match=r"PCAPdroid \(com.emanuelef.remote_capture\) is not installed "
        r".*Android 5.0 \(API 21\).*API 19",
    ) as err:
        cap.PcapdroidSource().start(handset(plain), tmp_path / "x.pcap")
    assert err.value.kind == "not-runnable"


def test_lab_source_refuses_what_is_not_an_emulated_handset(plain, tmp_path):
    stranger = Handset("0123456789ABCDEF", f"127.0.0.1:{plain.lab.adb_port}")
    with pytest.raises(
        cap.CaptureError,
        match="0123456789ABCDEF is not an emulated handset of the lab on adb "
        r"port \d+ .*use --source pcapdroid",
    ):
        cap.LabSource(home=plain.lab.home).start(stranger, tmp_path / "x.pcapng")
    nolab = Handset("127.0.0.1:5555", f"127.0.0.1:{free_port()}")
    with pytest.raises(cap.CaptureError, match="no emulated lab serves adb port"):
        cap.LabSource(home=plain.lab.home).start(nolab, tmp_path / "x.pcapng")
    with pytest.raises(cap.CaptureError, match="unknown capture source 'wifi'"):
        cap.source_for("wifi")


def test_the_lab_going_away_mid_capture_keeps_the_file(tmp_path):
    port = free_port()
    lt = LabThread(
        LabConfig(
            adb_port=port, handsets=1, with_apps=False, modem=False, relay=False, consoles=False, home=tmp_path / "home"
        )
    ).start()
    try:
        lh = lt.lab.handsets[0]
        src = cap.LabSource(home=lt.lab.home)
        out = tmp_path / "gone.pcapng"
        src.start(Handset(lh.serial, f"127.0.0.1:{port}"), out)
        # a client of the tap, as the handset's app would be: one TLS request to the account host
        raw = socket.create_connection(("127.0.0.1", lh.tap.ports[ACCOUNT_HOST]), timeout=10)
        with lt.lab.cloud.ca.client_context().wrap_socket(raw, server_hostname=ACCOUNT_HOST) as s:
            s.sendall(b"GET /pass/activate/token HTTP/1.1\r\nHost: api.account.xiaomi.com\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
        wait_for(lambda: lh.tap.recent)
    finally:
        lt.stop()
    with pytest.raises(cap.CaptureError, match="went away during the capture") as err:
        src.check()
    result = err.value.result
    assert result is not None and result.path == out and result.packets > 0
    assert ACCOUNT_HOST in sni(out)  # what was written before is readable
    assert src.stop() is result  # stop() after it: the same evidence
    assert any("the lab stopped" in n for n in result.notes)


# --- a host interface -------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["dumpcap", "tcpdump"])
def test_host_source_on_loopback(tool, tmp_path):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    src = cap.source_for("host:lo", tool=tool, bpf=f"tcp port {port}")
    src.start(None, tmp_path / "lo.cap")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"hello loopback")
        assert c.recv(100) == b"hello loopback"
    t.join(10)
    server.close()
    r = src.stop()
    assert r.source == "host:lo" and r.format == ("pcapng" if tool == "dumpcap" else "pcap")
    assert r.packets >= 4, r  # handshake, data, echo, close
    assert src.proc.returncode is not None  # ended by our SIGINT
    ports = {row[0] for row in tshark_fields(r.path, "tcp.dstport")}
    assert str(port) in ports


def test_host_source_on_a_missing_interface_says_so(tmp_path):
    with pytest.raises(cap.CaptureError, match="did not start") as err:
        cap.source_for("host:nosuch0", timeout=10).start(None, tmp_path / "x.pcapng")
    assert err.value.kind == "not-runnable"
