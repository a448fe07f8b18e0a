"""``hostctl trace`` against the emulated lab, through adb and Frida exactly as on a handset.

The Messaging app of a miui-v5-2014-07 handset reports an added contact to api.account.xiaomi.com
over TLS (the system's OpenSSL under CPython's ssl module). The trace must show the request the
lab rendered in SSL_write_ex's plaintext with the socket's peer, the TLS records on the same
socket without it, the app's logd heartbeats (sendto), the Java hooks reported unavailable (no
Java VM in the emulated apps), the detach and the gap when the app restarts, and a clean stop
on SIGINT with every event flushed.

Restarting: the lab does not act on ``am force-stop`` (handset.force_stop only delivers the
intent, and the lab's _on_intent has no handler for it), so the test restarts the app process
itself with ``LabHandset.apps[pkg].restart()`` (a new OS process, a new pid, joined to the
handset's portal again), which is what a crash or a system restart of the app looks like to Frida.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import frida
import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.events import (
    Attached,
    Connect,
    Detached,
    Endpoint,
    Gap,
    HookStatus,
    SocketData,
    SslData,
    TlsSecret,
    TraceNote,
    TraceStart,
    TraceStop,
    keylog_lines,
    read_jsonl,
)
from hostctl.trace import FridaVersionError, TraceOptions, Tracer, frida_error, open_device
from tests.conftest import wait_for

MMS = "com.android.mms"
ACCOUNT = "api.account.xiaomi.com"
JAVA_GROUPS = (
    "java:android.telephony.TelephonyManager",
    "java:android.telephony.SubscriptionManager",
    "java:javax.crypto.Cipher",
    "java:android.telephony.SmsManager",
    "java:com.xiaomi.mms.transaction.Mx*",
)


@pytest.fixture(scope="module")
def tlab(adb_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("trace-lab")
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


def contact_added(lh, number):
    """The app reports the contact over TLS; returns the request the lab rendered, once the app
    has sent it (a ping on the same control channel is answered after the report is done)."""
    (request,) = [r for r in lh.emit("contact_added", contact_number=number) if r.host == ACCOUNT]
    lh.apps[MMS].ping(timeout=20)
    return request


def app_peer(lh, host):
    """Where the app connects for ``host``: the address the handset's resolver gave it (the
    service itself, or a wire tap in front of it)."""
    ip, port = json.loads(lh.apps[MMS].env["HOSTCTL_HOSTS"])[host].rsplit(":", 1)
    return Endpoint(ip, int(port))


def report_writes(events, request):
    """SSL_write(_ex) events carrying the HTTP request the app made for ``request``."""
    line = f"{request.method} {request.path} HTTP/1.1\r\n".encode()
    out = []
    for e in events:
        if isinstance(e, SslData) and e.direction == "out" and e.data.data.startswith(line):
            head, _, body = e.data.data.partition(b"\r\n\r\n")
            if json.loads(body) == request.fields:
                out.append(e)
    return out


def test_tls_plaintext_peer_heartbeats_and_hook_status(tlab, tmp_path):
    lh = tlab.lab.handsets[0]
    tracer = Tracer(open_device(lh.serial), tmp_path, serial=lh.serial)
    tracer.start()
    try:
        request = contact_added(lh, "+8613800000071")
    finally:
        summary = tracer.stop()
    events = list(read_jsonl(tmp_path / "events.jsonl"))
    account = app_peer(lh, ACCOUNT)

    (write,) = report_writes(events, request)
    assert write.peer == account and write.sni == ACCOUNT and write.socket_type == "tcp"
    assert write.local is not None and write.local.ip == "127.0.0.1" and write.fd >= 0
    assert write.data.data.split(b"\r\n")[1] == f"Host: {ACCOUNT}".encode()
    assert request.fields["contact"] == "+8613800000071" and write.length == len(write.data.data)
    assert write.pid == lh.apps[MMS].pid and write.agent_ts and write.host_ts >= write.agent_ts
    # the same socket: connected to the service, carrying TLS records, never the plaintext
    assert [c for c in events if isinstance(c, Connect) and c.fd == write.fd and c.peer == account]
    records = [
        e
        for e in events
        if isinstance(e, SocketData) and e.fd == write.fd and e.direction == "out" and e.agent_ts <= write.agent_ts
    ]
    assert records and all(r.data.data[:1] in (b"\x16", b"\x14", b"\x17") for r in records)
    assert not any(b"+8613800000071" in r.data.data for r in records)
    # the reply read back through SSL_read_ex
    assert any(
        isinstance(e, SslData) and e.direction == "in" and e.fd == write.fd and b'"result": "ok"' in e.data.data
        for e in events
    )

    beats = [e for e in events if isinstance(e, SocketData) and e.fn == "sendto" and e.socket_type == "udp"]
    assert beats and all(e.peer == Endpoint("127.0.0.1", tlab.lab.log_port) for e in beats)
    assert any(e.data.data == f"I/Mms({lh.apps[MMS].pid}): heartbeat".encode() for e in beats)

    status = [e for e in events if isinstance(e, HookStatus)][-1]
    assert status.java is False
    missing = status.missing_targets()
    for target in JAVA_GROUPS:
        assert "no Java runtime" in missing[target]
    assert {"native:libc.so.6!connect", "native:libc.so.6!sendto", "native:libc.so.6!write"} <= set(status.hooked)
    assert any(h.startswith("native:libssl.so") and h.endswith("!SSL_write_ex") for h in status.hooked)

    assert isinstance(events[0], TraceStart) and isinstance(events[-1], TraceStop)
    assert summary.events == len(events) and summary.stopped_by == "stop"
    assert summary.apps[MMS]["java"] is False and summary.apps[MMS]["pids"] == [lh.apps[MMS].pid]
    assert json.loads((tmp_path / "summary.json").read_text())["events"] == len(events)
    # every line has both clocks and payloads carry base64 with their length
    for line in (tmp_path / "events.jsonl").read_text().splitlines():
        doc = json.loads(line)
        assert "host_ts" in doc and "agent_ts" in doc
        if doc["kind"] == "ssl":
            assert set(doc["data"]) == {"length", "size", "base64"}


def test_tls_secrets_from_the_apps_openssl_decrypt_the_lab_capture(tlab, tmp_path):
    # the app's real OpenSSL (CPython's ssl over libssl.so.3) logs its secrets to the agent's
    # key-log callback; sslkeylog.txt then decrypts the wire tap's capture of the same request
    from hostctl.wire.decrypt import decrypt_capture

    lh = tlab.lab.handsets[0]
    tracer = Tracer(open_device(lh.serial), tmp_path, serial=lh.serial)
    tracer.start()
    try:
        request = contact_added(lh, "+8613800000079")
    finally:
        summary = tracer.stop()
    events = list(read_jsonl(tmp_path / "events.jsonl"))
    (write,) = report_writes(events, request)
    secrets = [e for e in events if isinstance(e, TlsSecret)]
    assert secrets and all(s.module.startswith("libssl.so") and s.via == "keylog-callback" for s in secrets)
    mine = [s for s in secrets if s.ssl == write.ssl]
    assert {s.label for s in mine} >= {"CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} or {
        s.label for s in mine
    } == {"CLIENT_RANDOM"}
    assert all(s.sni == ACCOUNT and s.peer == app_peer(lh, ACCOUNT) for s in mine)
    keylog = tmp_path / "sslkeylog.txt"
    assert (keylog.stat().st_mode & 0o777) == 0o600
    lines = [x for x in keylog.read_text().splitlines() if not x.startswith("#")]
    assert lines == keylog_lines(events) and summary.tls_secrets == len(lines)
    status = [e for e in events if isinstance(e, HookStatus)][-1]
    assert any(h.startswith("native:libssl.so") and h.endswith("!SSL_CTX_set_keylog_callback") for h in status.hooked)

    capture = lh.tap.continuous_path
    wait_for(
        lambda: any(bytes(f.data["c2s"]).startswith(write.data.data) for f in decrypt_capture(capture, [keylog])[0]),
        timeout=20,
        interval=0.2,
    )
    flows, _ = decrypt_capture(capture, [keylog])
    (flow,) = [f for f in flows if bytes(f.data["c2s"]).startswith(write.data.data)]
    assert flow.summary["status"] == "decrypted"
    assert b"+8613800000079" in bytes(flow.data["c2s"]) and b'"result": "ok"' in bytes(flow.data["s2c"])


def test_app_restart_is_a_detach_a_gap_and_a_reattach(tlab, tmp_path):
    lh = tlab.lab.handsets[0]
    tracer = Tracer(open_device(lh.serial), tmp_path, serial=lh.serial, options=TraceOptions(poll_interval=0.05))
    tracer.start()
    try:
        old = lh.apps[MMS].pid
        contact_added(lh, "+8613800000072")
        lh.apps[MMS].restart()
        new = lh.apps[MMS].pid
        assert new != old

        def reattached():
            tracer.poll()
            return tracer.apps[MMS].attached and tracer.apps[MMS].pid == new

        wait_for(reattached, timeout=30, interval=0.05)
        after = contact_added(lh, "+8613800000073")
    finally:
        summary = tracer.stop()
    events = list(read_jsonl(tmp_path / "events.jsonl"))
    (detach,) = [e for e in events if isinstance(e, Detached)]
    (gap,) = [e for e in events if isinstance(e, Gap)]
    assert detach.pid == old and detach.reason == "process-terminated"
    assert (gap.old_pid, gap.new_pid, gap.reason) == (old, new, "process-terminated")
    assert detach.host_ts == gap.start < gap.end and gap.duration > 0
    attaches = [e for e in events if isinstance(e, Attached)]
    assert [a.pid for a in attaches] == [old, new]
    i_gap = events.index(gap)
    (write,) = report_writes(events, after)
    assert write.pid == new and events.index(write) > i_gap
    assert summary.apps[MMS]["pids"] == [old, new] and len(summary.apps[MMS]["gaps"]) == 1
    assert summary.apps[MMS]["gaps"][0]["new_pid"] == new


def test_sigint_stops_cleanly_with_everything_flushed(tlab, tmp_path, adb_port):
    lh = tlab.lab.handsets[0]
    out = tmp_path / "trace"
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(adb_port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostctl", "trace", "-s", lh.serial, "--out", str(out), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: [lines.put(x.decode()) for x in proc.stderr], daemon=True),
        threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True),
    ]
    for r in readers:
        r.start()
    try:
        seen = []
        deadline = time.monotonic() + 60
        while not any("agent attached" in x for x in seen):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        request = contact_added(lh, "+8613800000074")
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for r in readers:
        r.join(10)
    stderr = "".join(seen) + "".join(lines.queue)
    assert proc.returncode == ExitStatus.INTERRUPTED, stderr
    summary = json.loads(stdout[0])
    assert summary["stopped_by"] == "interrupt" and "SIGINT: stopping" in stderr
    events = list(read_jsonl(out / "events.jsonl"))
    assert len(report_writes(events, request)) == 1
    assert isinstance(events[-1], TraceStop) and events[-1].reason == "interrupt"
    assert summary["events"] == len(events) == json.loads((out / "summary.json").read_text())["events"]
    assert summary["apps"][MMS]["agent_events"] == max(e.seq for e in events if e.seq is not None)


def test_cli_duration_spawn_fallback_and_an_absent_app(tlab, tmp_path):
    lh = tlab.lab.handsets[0]
    out, err = io.StringIO(), io.StringIO()
    st = main(
        [
            "trace",
            "-s",
            lh.serial,
            "--app",
            MMS,
            "--app",
            "com.example.absent",
            "--spawn",
            "--duration",
            "1",
            "--out",
            str(tmp_path),
            "--json",
        ],
        Environment(stdout=out, stderr=err, vars=dict(os.environ)),
    )
    assert st == ExitStatus.ERROR, err.getvalue()
    doc = json.loads(out.getvalue())
    assert doc["stopped_by"] == "duration"
    assert doc["apps"][MMS]["ever_attached"] and doc["apps"][MMS]["mode"] == "attach"
    assert not doc["apps"]["com.example.absent"]["ever_attached"]
    assert any("spawn is not supported" in n and "attached to the running com.android.mms" in n for n in doc["notes"])
    assert "never attached to com.example.absent" in err.getvalue()
    events = list(read_jsonl(tmp_path / "events.jsonl"))
    (attach,) = [e for e in events if isinstance(e, Attached)]
    assert attach.mode == "attach" and "spawn is not supported" in attach.note
    assert [e.message for e in events if isinstance(e, TraceNote) and e.app == "com.example.absent"]


def test_power_cycle_loses_the_device_and_the_trace_finds_it_again(tlab, tmp_path):
    lh = tlab.lab.handsets[0]
    tracer = Tracer(open_device(lh.serial), tmp_path, serial=lh.serial, options=TraceOptions(poll_interval=0.05))
    tracer.start()
    try:
        old = lh.apps[MMS].pid
        tlab.call(lh.power_off())
        tlab.call(lh.power_on())
        new = lh.apps[MMS].pid

        def reattached():
            tracer.poll()
            return tracer.apps[MMS].attached and tracer.apps[MMS].pid == new

        wait_for(reattached, timeout=60, interval=0.05)
        after = contact_added(lh, "+8613800000075")
    finally:
        summary = tracer.stop()
    events = list(read_jsonl(tmp_path / "events.jsonl"))
    (gap,) = [e for e in events if isinstance(e, Gap)]
    assert (gap.old_pid, gap.new_pid) == (old, new) and gap.start < gap.end
    (write,) = report_writes(events, after)
    assert write.pid == new and events.index(write) > events.index(gap)
    assert summary.apps[MMS]["pids"] == [old, new]


class _MismatchedDevice:
    """What a frida-server of another major version looks like to this client (the message is
    frida's own, as a 16.7 portal answered a 17.x client's enumerate/attach/query)."""

    id = name = "old-frida-server"

    def enumerate_processes(self):
        raise frida.ProtocolError(
            "unable to communicate with remote frida-server; please ensure that major "
            "versions match and that the remote Frida has the feature you are trying to use"
        )

    def on(self, *a):
        pass

    def off(self, *a):
        pass


def test_version_mismatch_is_a_clear_error_and_the_trace_is_closed(tmp_path):
    tracer = Tracer(_MismatchedDevice(), tmp_path, serial="SER")
    with pytest.raises(
        FridaVersionError,
        match=rf"SER: .*major versions must match: this host runs frida "
        rf"{frida.__version__}, so run a frida-server "
        rf"{frida.__version__.split('.')[0]}\.x",
    ):
        tracer.start()
    events = list(read_jsonl(tmp_path / "events.jsonl"))
    assert isinstance(events[-1], TraceStop) and events[-1].reason == "error"
    mapped = frida_error(frida.ServerNotRunningError("unable to connect to remote frida-server"), "attaching", "SER")
    assert "start frida-server" in str(mapped) and not isinstance(mapped, FridaVersionError)


@pytest.fixture(scope="module", params=["miui-v5-2014-07", "miui-v5-2014-08-10"])
def plab(request, adb_port, tmp_path_factory):
    if request.param == "miui-v5-2014-07":
        yield request.getfixturevalue("tlab")  # the module's lab: no second one for this profile
        return
    home = tmp_path_factory.mktemp("trace-lab-aug")
    with LabThread(
        LabConfig(
            adb_port=adb_port, handsets=1, profile=request.param, home=home, modem=False, relay=False, consoles=False
        )
    ) as lt:
        yield lt


def account_report(lh, n):
    """One report to api.account.xiaomi.com over TLS: the July build reports an added contact; the
    August OTA (Cloud Messaging opt-in, switched on before) reports the activation (/mx/activate)."""
    if lh.handset.profile.name == "miui-v5-2014-07":
        return contact_added(lh, f"+86138000000{80 + n}")
    (request,) = [r for r in lh.emit("cm_enabled") if r.host == ACCOUNT]
    lh.apps[MMS].ping(timeout=20)
    return request


def test_trace_secrets_decrypt_every_tls_flow_and_the_cross_check_agrees(plab, tmp_path):
    # both shipped profiles: the trace's secrets decrypt every TLS flow the app opened while its
    # hooks were in place, and the hooked plaintext and the decrypted wire agree; with the SSL
    # hooks' events of one flow taken out, the cross-check reports that flow (wire-only), only it
    from hostctl.emulator.screens import set_cloud_messaging
    from hostctl.wire.crosscheck import cross_check
    from hostctl.wire.decrypt import decrypt_trace_capture

    lh = plab.lab.handsets[0]
    if lh.handset.profile.name != "miui-v5-2014-07":
        set_cloud_messaging(lh.handset, True, 0)
        lh.apps[MMS].ping(timeout=20)
    tracer = Tracer(open_device(lh.serial), tmp_path, serial=lh.serial)
    tracer.start()
    try:
        first = account_report(lh, 1)
        second = account_report(lh, 2)
    finally:
        summary = tracer.stop()
    events = list(read_jsonl(tmp_path / "events.jsonl"))
    writes = [w for req in (first, second) for w in report_writes(events, req)]
    w1, w2 = writes[0], writes[-1]
    assert w1.ssl != w2.ssl or w1.seq != w2.seq
    capture = lh.tap.continuous_path
    # the flows begun while the hooks were in place (the app's earlier connections have no secrets)
    hooked_at = min(e.host_ts for e in events if isinstance(e, HookStatus))
    window = (hooked_at, summary.stopped)

    def both_decrypted():
        flows, _ = decrypt_trace_capture(capture, tmp_path)
        return sum(1 for f in flows if bytes(f.data["c2s"]).startswith((w1.data.data, w2.data.data))) >= 2

    wait_for(both_decrypted, timeout=20, interval=0.2)
    flows, report = decrypt_trace_capture(capture, tmp_path)
    traced = [f for f in flows if window[0] <= f.first_ts <= window[1]]
    assert len(traced) >= 2 and all(f.summary["status"] == "decrypted" for f in traced), [
        (f.id, f.summary) for f in traced
    ]
    cc = cross_check(flows, events, window=window)
    assert cc.passed, [f.to_json() for f in cc.failing()]
    assert cc.counts == {"agree": len(cc.flows)} and len(cc.flows) >= len(traced)

    # that flow's SSL object's calls, up to its next session (a freed SSL's address comes back)
    upto = min(
        [e.seq for e in events if isinstance(e, TlsSecret) and e.ssl == w2.ssl and e.seq > w2.seq], default=1 << 62
    )
    gone = [
        e
        for e in events
        if not (isinstance(e, SslData) and e.ssl == w2.ssl and e.pid == w2.pid and w2.seq <= e.seq < upto)
    ]
    cc2 = cross_check(flows, gone, window=window)
    assert not cc2.passed
    failing = cc2.failing()
    assert len(failing) == 1, [(f.flow, f.status, f.matched_by, f.why) for f in failing] + [w2.seq, w2.ssl]
    (bad,) = failing
    cr2 = [e.client_random for e in events if isinstance(e, TlsSecret) and e.ssl == w2.ssl and e.seq < w2.seq][-1]
    (flow2,) = [f for f in flows if f.summary.get("client_random") == cr2]
    assert bytes(flow2.data["c2s"]).startswith(w2.data.data)
    assert bad.flow == flow2.id and bad.status == "wire-only"
    assert bad.evidence[0]["record"] >= 1 and bad.evidence[0]["wire_offset"] > 0
