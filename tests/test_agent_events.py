"""The agent's event schema: typed parsing on the host, JSONL round trips, clear errors; and the
agent's own behaviour inside an emulated app (capture limit, AF_UNIX filter, no double reports).

The lab's app processes run CPython, whose ``ssl`` module calls the system's OpenSSL, so the
agent's SSL_write_ex/SSL_read_ex hooks see real TLS; there is no Java VM in them, so the Java
hooks report themselves as missing.
"""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.events import (
    SCHEMA_VERSION,
    AgentStart,
    CipherOp,
    Connect,
    Endpoint,
    EventError,
    EventWriter,
    EvpCipher,
    Gap,
    HookStatus,
    IdentifierRead,
    InvalidMessage,
    MxCall,
    Payload,
    SmsSend,
    SocketData,
    SslData,
    cipher_operations,
    from_agent,
    from_json,
    kinds,
    read_events,
    read_jsonl,
    to_json,
)
from hostctl.trace import TraceOptions, Tracer, open_device

MMS = "com.android.mms"


def msg(kind: str, seq: int = 1, **fields):
    return {"v": SCHEMA_VERSION, "kind": kind, "seq": seq, "t": 1_700_000_000_123, "pid": 42, "tid": 43, **fields}


def ssl_msg(**over):
    m = msg(
        "ssl",
        fn="SSL_write_ex",
        direction="out",
        module="libssl.so.3",
        ssl="0x55aa",
        fd=9,
        socket_type="tcp",
        local={"ip": "127.0.0.1", "port": 40000},
        peer={"ip": "10.0.0.1", "port": 443},
        sni="api.account.xiaomi.com",
        length=11,
        parts=[{"name": "data", "length": 11, "size": 11}],
    )
    m.update(over)
    return m


# --- schema ------------------------------------------------------------------------------------


def test_ssl_message_becomes_a_typed_event_with_both_clocks():
    e = from_agent(ssl_msg(), b"hello world", app=MMS, host_ts=1_700_000_001.5)
    assert isinstance(e, SslData)
    assert e.data == Payload(b"hello world", 11) and not e.data.truncated
    assert e.peer == Endpoint(ip="10.0.0.1", port=443) and str(e.peer) == "10.0.0.1:443"
    assert e.agent_ts == pytest.approx(1_700_000_000.123) and e.host_ts == 1_700_000_001.5
    assert (e.app, e.pid, e.tid, e.seq, e.sni) == (MMS, 42, 43, 1, "api.account.xiaomi.com")
    assert e.payloads() == {"data": e.data}


def test_several_parts_split_the_binary_data_in_order():
    m = msg(
        "cipher",
        op="final",
        api="Cipher.doFinal([B)",
        algorithm="AES/CBC/PKCS5Padding",
        mode=None,
        cipher_id=7,
        key_class=None,
        caller="com.x.A.f(A.java:1)",
        stack=["a", "b"],
        parts=[{"name": "input", "length": 3, "size": 3}, {"name": "output", "length": 16, "size": 16}],
    )
    e = from_agent(m, b"abc" + bytes(range(16)), app=MMS, host_ts=1.0)
    assert isinstance(e, CipherOp)
    assert e.input == Payload(b"abc", 3) and e.output == Payload(bytes(range(16)), 16)
    assert e.key is None and e.stack == ("a", "b")


def test_truncated_capture_keeps_the_full_length():
    e = from_agent(
        ssl_msg(length=100000, parts=[{"name": "data", "length": 100000, "size": 4}]), b"POST", app=MMS, host_ts=1.0
    )
    assert e.data.truncated and e.data.length == 100000 and e.data.data == b"POST"
    j = to_json(e)["data"]
    assert j == {"length": 100000, "size": 4, "base64": base64.b64encode(b"POST").decode()}


def test_byte_array_arguments_become_blobs_of_the_event():
    m = msg(
        "mx-call",
        class_name="com.xiaomi.mms.transaction.MxMessageService",
        method="send",
        args=[{"bytes": "arg0", "length": 3}, "+8613800000000"],
        ret=None,
        caller=None,
        parts=[{"name": "arg0", "length": 3, "size": 3}],
    )
    e = from_agent(m, b"\x01\x02\x03", app=MMS, host_ts=1.0)
    assert isinstance(e, MxCall) and e.blobs == {"arg0": Payload(b"\x01\x02\x03", 3)}
    assert e.payloads() == {"arg0": Payload(b"\x01\x02\x03", 3)}


@pytest.mark.parametrize(
    "event",
    [
        from_agent(ssl_msg(), b"hello world", app=MMS, host_ts=2.0),
        from_agent(
            msg(
                "hook-status",
                hooked=["native:libc.so.6!connect"],
                missing=[{"target": "java:javax.crypto.Cipher", "reason": "no Java"}],
                java=False,
                reason="trace started",
            ),
            None,
            app=MMS,
            host_ts=2.0,
        ),
        from_agent(
            msg(
                "connect",
                fn="connect",
                fd=3,
                socket_type="tcp6",
                peer={"ip": "::1", "port": 5222},
                local=None,
                ret=-1,
                errno=115,
            ),
            None,
            app=MMS,
            host_ts=2.0,
        ),
        from_agent(
            msg(
                "socket",
                fn="sendto",
                direction="out",
                fd=4,
                socket_type="unix:dgram",
                local=None,
                peer={"path": "@logdw"},
                length=2,
                parts=[{"name": "data", "length": 2, "size": 2}],
            ),
            b"hi",
            app=MMS,
            host_ts=2.0,
        ),
        from_agent(
            msg(
                "identifier-read",
                api="TelephonyManager.getDeviceId",
                class_name="android.telephony.TelephonyManager",
                method="getDeviceId",
                identifier="imei",
                args=[0],
                value="861234567890123",
                caller="com.android.mms.X.y(X.java:3)",
                stack=["f0", "f1"],
            ),
            None,
            app=MMS,
            host_ts=2.0,
        ),
        from_agent(
            msg(
                "sms-send",
                api="SmsManager.sendTextMessage",
                destination="+8613800000000",
                service_center=None,
                text="hi",
                text_parts=None,
                caller=None,
                stack=[],
            ),
            None,
            app=MMS,
            host_ts=2.0,
        ),
        from_agent(
            msg(
                "agent-start",
                process=MMS,
                arch="x64",
                platform="linux",
                frida="17.26.0",
                runtime="QJS",
                java=False,
                options={"maxCapture": 10},
            ),
            None,
            app=MMS,
            host_ts=2.0,
        ),
        Gap(app=MMS, pid=7, host_ts=3.0, start=1.0, end=3.0, reason="process-terminated", old_pid=5, new_pid=7),
        InvalidMessage(app=MMS, pid=7, host_ts=3.0, error="bad", message={"kind": "x"}, data=Payload(b"\x00", 1)),
    ],
)
def test_every_kind_round_trips_through_json(event):
    line = json.dumps(to_json(event))
    back = from_json(json.loads(line))
    assert back == event and type(back) is type(event)
    assert json.loads(line)["v"] == SCHEMA_VERSION and json.loads(line)["kind"] == event.kind


def test_kinds_cover_agent_and_host():
    names = set(kinds())
    assert {
        "ssl",
        "socket",
        "connect",
        "hook-status",
        "identifier-read",
        "cipher",
        "sms-send",
        "mx-call",
        "agent-start",
        "agent-stop",
        "agent-error",
    } <= names
    assert {"trace-start", "attach", "detach", "gap", "note", "invalid", "trace-stop"} <= names
    assert isinstance(
        from_agent(msg("hook-status", hooked=[], missing=[], java=True), None, app="a", host_ts=0), HookStatus
    )
    assert IdentifierRead.KIND == "identifier-read" and SmsSend.KIND == "sms-send" and AgentStart.SOURCE == "agent"
    assert Connect.KIND == "connect" and SocketData.KIND == "socket"


@pytest.mark.parametrize(
    "message, data, match",
    [
        (ssl_msg(v=1), b"hello world", r"schema version 1, this host reads 2 \(rebuild the agent"),
        (ssl_msg(kind="teleport"), b"hello world", r"'teleport' #1 from com.android.mms: unknown kind"),
        (msg("gap", start=1, end=2, reason="x"), None, "unknown kind"),  # a host kind from the agent
        (ssl_msg(), b"hello", r"part 'data' needs bytes 0\.\.11 of 5"),
        (ssl_msg(), b"hello world!", "parts describe 11 bytes, the message carries 12"),
        (ssl_msg(parts=[{"name": "data", "length": 3, "size": 11}]), b"hello world", "claims a length of 3"),
        (ssl_msg(parts=[{"name": "key", "length": 11, "size": 11}]), b"hello world", "part 'key' is not a payload"),
        (ssl_msg(fd="9"), b"hello world", r"'ssl' #1 .*fd: expected int, got str"),
        (ssl_msg(peer={"ip": "1.2.3.4"}), b"hello world", "peer: .*port: expected int"),
        ({k: v for k, v in ssl_msg().items() if k != "module"}, b"hello world", "ssl event without 'module'"),
        ("not an object", None, "expected an object"),
    ],
)
def test_bad_agent_messages_are_named_errors(message, data, match):
    with pytest.raises(EventError, match=match):
        from_agent(message, data, app=MMS, host_ts=1.0)


def test_writer_and_reader_name_the_bad_line(tmp_path):
    path = tmp_path / "events.jsonl"
    good = from_agent(ssl_msg(), b"hello world", app=MMS, host_ts=2.0)
    with EventWriter(path) as w:
        threads = [threading.Thread(target=lambda: [w.write(good) for _ in range(50)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert w.total == 200 and w.counts == {"ssl": 200}
    events = list(read_jsonl(path))
    assert len(events) == 200 and all(e == good for e in events)
    with open(path, "a") as f:
        f.write('{"v": 1, "kind": "ssl", "app": "x"}\n')
    with pytest.raises(EventError, match=r"events\.jsonl:201: ssl event without 'host_ts'"):
        list(read_jsonl(path))
    path.write_text('{"v": 1, "kind": "ssl"\n')
    with pytest.raises(EventError, match=r"events\.jsonl:1: not JSON"):
        list(read_jsonl(path))
    path.write_text(json.dumps({**to_json(good), "data": {"length": 11, "size": 11, "base64": "!!"}}) + "\n")
    with pytest.raises(EventError, match="events.jsonl:1: ssl event: data: payload base64"):
        list(read_jsonl(path))


def test_lenient_reader_notes_bad_lines_and_goes_on(tmp_path):
    path = tmp_path / "e.jsonl"
    good = Gap(app=MMS, host_ts=1.0, start=0.0, end=1.0, reason="x")
    path.write_text(json.dumps(to_json(good)) + "\n{broken\n\n" + json.dumps(to_json(good)) + "\n")
    errors: list[str] = []
    assert [(n, e) for n, e in read_events(path, errors=errors)] == [(1, good), (4, good)]
    assert len(errors) == 1 and errors[0].startswith(f"{path}:2: not JSON")
    assert bytes(Payload(b"ab", 5)) == b"ab"


def cipher_event(op, seq, cipher_id=7, mode="encrypt", **payloads):
    parts = [{"name": k, "length": len(v), "size": len(v)} for k, v in payloads.items()]
    m = msg(
        "cipher",
        seq=seq,
        op=op,
        api=f"Cipher.{op}",
        algorithm="AES/CBC/PKCS5Padding",
        mode=mode,
        cipher_id=cipher_id,
        key_class=None,
        caller="com.x.A.f(A.java:1)",
        stack=[],
        parts=parts,
    )
    return from_agent(m, b"".join(payloads.values()), app=MMS, host_ts=1.0)


def evp_event(op, seq, encrypt=True, aad=False, **payloads):
    parts = [{"name": k, "length": len(v), "size": len(v)} for k, v in payloads.items()]
    m = msg(
        "evp",
        seq=seq,
        fn=f"EVP_Cipher{op}",
        op=op,
        module="libcrypto.so.3",
        ctx="0x10",
        cipher="AES-128-GCM",
        encrypt=encrypt,
        aad=aad,
        parts=parts,
    )
    return from_agent(m, b"".join(payloads.values()), app=MMS, host_ts=1.0)


def test_cipher_operations_join_init_updates_and_final():
    events = [
        cipher_event("init", 1, key=b"k" * 16, iv=b"i" * 16),
        cipher_event("update", 2, input=b"+86138", output=b""),
        cipher_event("final", 3, input=b"00000001", output=b"C" * 16),
        cipher_event("final", 4, input=b"+8613800000001", output=b"C" * 16),  # reused: same key and IV
        cipher_event("init", 5, cipher_id=8, mode="decrypt", key=b"q" * 16, iv=b"v" * 16),
        cipher_event("update", 6, cipher_id=8, mode="decrypt", input=b"D" * 16, output=b"never finished"),
        evp_event("init", 7, key=b"K" * 16),
        evp_event("init", 8, iv=b"N" * 12),  # per-record nonce: the key stays
        evp_event("update", 9, aad=True, input=b"\x17\x03\x03"),
        evp_event("update", 10, input=b"POST /", output=b"xxxxxx"),
        evp_event("final", 11, output=b""),
    ]
    ops = list(cipher_operations(events))
    first, second, evp, unfinished = ops
    assert (first.input, first.output, first.key, first.iv, first.mode) == (
        b"+8613800000001",
        b"C" * 16,
        b"k" * 16,
        b"i" * 16,
        "encrypt",
    )
    assert first.seqs == (2, 3) and first.complete and first.source == "java" and first.caller
    assert (second.input, second.output, second.key, second.iv) == (first.input, first.output, first.key, first.iv)
    assert (evp.source, evp.key, evp.iv, evp.aad, evp.input, evp.mode) == (
        "evp",
        b"K" * 16,
        b"N" * 12,
        b"\x17\x03\x03",
        b"POST /",
        "encrypt",
    )
    assert (unfinished.mode, unfinished.output, unfinished.complete) == ("decrypt", b"never finished", False)


def test_closed_writer_refuses_instead_of_losing_silently(tmp_path):
    w = EventWriter(tmp_path / "e.jsonl")
    w.close()
    w.close()
    with pytest.raises(EventError, match="closed"):
        w.write(Gap(app=MMS, host_ts=1.0, start=0.0, end=1.0, reason="x"))


# --- the agent in an emulated app ----------------------------------------------------------------


@pytest.fixture(scope="module")
def alab(adb_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("agent-events")
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


def traced(lt, out, options, action):
    """Trace the Messaging app while ``action(handset)`` runs; the app has finished it (a ping
    answered after it on the same control channel) before the trace stops."""
    lh = lt.lab.handsets[0]
    tracer = Tracer(open_device(lh.serial), out, serial=lh.serial, options=options)
    tracer.start()
    try:
        # start() attaches to the running app; when that first try fails on a loaded machine
        # (an attach or a process listing that timed out) the tracer retries on poll(), as
        # `hostctl trace` does: the action must not run before the agent is in
        deadline = time.monotonic() + 30
        while not tracer.apps[MMS].attached and time.monotonic() < deadline:
            time.sleep(0.05)
            tracer.poll()
        assert tracer.apps[MMS].attached, f"the agent never attached: {tracer.errors} {tracer.notes}"
        result = action(lh)
        lh.apps[MMS].ping(timeout=20)
    finally:
        summary = tracer.stop()
    return result, summary, list(read_jsonl(out / "events.jsonl"))


def report(lh, n):
    return lh.emit("contact_added", contact_number=f"+86138000000{n:02d}")


def test_capture_limit_cuts_payloads_but_keeps_lengths(alab, tmp_path):
    requests, summary, events = traced(alab, tmp_path, TraceOptions(max_capture=16), lambda lh: report(lh, 1))
    assert requests and summary.apps[MMS]["agent_errors"] == 0
    posts = [
        e
        for e in events
        if isinstance(e, SslData) and e.direction == "out" and e.data.data.startswith(b"POST /contacts")
    ]
    assert len(posts) == 1, "one SSL_write_ex call, one event (no nested SSL_write double)"
    assert posts[0].data.truncated and len(posts[0].data.data) == 16 and posts[0].length == posts[0].data.length > 16


def test_unix_sockets_only_when_asked(alab, tmp_path):
    _, _, plain = traced(alab, tmp_path / "a", TraceOptions(), lambda lh: None)
    assert not [e for e in plain if isinstance(e, SocketData) and (e.socket_type or "").startswith("unix")]
    # the action's own ping: its pong's send() hook has returned (and queued its event) before
    # the app reads the next request, so traced()'s closing ping proves it is in the trace. (The
    # closing ping's own pong can still be in the hook when the trace stops: the lab reads the
    # reply as soon as the syscall wrote it.)
    _, _, with_unix = traced(
        alab, tmp_path / "b", TraceOptions(unix_sockets=True), lambda lh: lh.apps[MMS].ping(timeout=20)
    )
    ctl = [e for e in with_unix if isinstance(e, SocketData) and e.socket_type == "unix:stream"]
    # the app's answer to the lab's ping goes out on its control channel (a socketpair)
    assert any(e.fn == "send" and e.direction == "out" and b'"pong":true' in e.data.data for e in ctl), [
        (e.fn, e.direction, e.socket_type, e.data.data[:80]) for e in with_unix if isinstance(e, SocketData)
    ]


def test_agent_sequence_has_no_holes(alab, tmp_path):
    _, summary, events = traced(alab, tmp_path, TraceOptions(), lambda lh: [report(lh, 2), report(lh, 3)])
    seqs = [e.seq for e in events if e.seq is not None]
    assert seqs == list(range(1, len(seqs) + 1))
    assert summary.apps[MMS]["agent_events"] == len(seqs)


def test_evp_hooks_show_the_record_encryption_of_the_same_bytes(alab, tmp_path):
    _, summary, events = traced(alab, tmp_path, TraceOptions(evp=True), lambda lh: report(lh, 4))
    status = [e for e in events if isinstance(e, HookStatus)][-1]
    assert any(h.startswith("native:libcrypto.so") and h.endswith("!EVP_CipherUpdate") for h in status.hooked)
    (update,) = [
        e
        for e in events
        if isinstance(e, EvpCipher)
        and e.op == "update"
        and e.encrypt
        and e.input is not None
        and e.input.data.startswith(b"POST /contacts/report")
    ]
    assert update.cipher and update.output is not None and update.output.length == update.input.length
    assert update.output.data != update.input.data
    # what the cipher produced is what went out on the socket (inside a TLS record)
    wire = [e for e in events if isinstance(e, SocketData) and e.direction == "out"]
    assert any(update.output.data in e.data.data for e in wire)
    inits = [e for e in events if isinstance(e, EvpCipher) and e.op == "init" and e.ctx == update.ctx]
    assert any(e.key is not None and e.key.length in (16, 32) for e in inits)
    (op,) = [o for o in cipher_operations(events) if o.input.startswith(b"POST /contacts/report")]
    assert op.mode == "encrypt" and op.key and op.iv and len(op.iv) == 12 and op.output == update.output.data
    assert op.aad[:3] == b"\x17\x03\x03"  # the TLS 1.3 record header is the AEAD's additional data
    assert summary.apps[MMS]["agent_errors"] == 0


# --- the Java hooks in a real JVM ---------------------------------------------------------------
# The emulated apps have no Java VM. frida-java-bridge also drives HotSpot, so the Java hooks run
# for real in a JVM whose classpath has stand-ins for the Android framework classes the agent
# looks for (same names and signatures; javax.crypto.Cipher is the JDK's own). Skipped where no
# JDK is installed.

JAVA_SOURCES = {
    "android/telephony/TelephonyManager.java": """
package android.telephony;
public class TelephonyManager {
    public String getDeviceId() { return getDeviceId(0); }
    public String getDeviceId(int slot) { return "86123456789012" + slot; }
    public String getLine1Number() { return "+8613800000001"; }
}""",
    "android/telephony/SmsManager.java": """
package android.telephony;
import java.util.ArrayList;
public class SmsManager {
    public void sendTextMessage(String to, String sc, String text, Object sent, Object delivered) {}
    public void sendMultipartTextMessage(String to, String sc, ArrayList<String> parts, ArrayList<Object> sent,
                                         ArrayList<Object> delivered) {}
    public void sendDataMessage(String to, String sc, short port, byte[] data, Object sent, Object delivered) {}
}""",
    "com/xiaomi/mms/transaction/MxMessageService.java": """
package com.xiaomi.mms.transaction;
public class MxMessageService {
    public String wrap(String to, byte[] body) { return to + ":" + body.length; }
}""",
    "com/android/org/conscrypt/NativeCrypto.java": """
package com.android.org.conscrypt;
import java.io.FileDescriptor;
public final class NativeCrypto {
    public static void SSL_write(long ssl, FileDescriptor fd, Object shc, byte[] b, int off, int len, int timeout) {}
    public static int SSL_read(long ssl, FileDescriptor fd, Object shc, byte[] b, int off, int len, int timeout) {
        byte[] reply = "HTTP/1.1 200 OK".getBytes();
        System.arraycopy(reply, 0, b, off, reply.length);
        return reply.length;
    }
}""",
    "Evidence.java": """
import android.telephony.SmsManager;
import android.telephony.TelephonyManager;
import com.android.org.conscrypt.NativeCrypto;
import com.xiaomi.mms.transaction.MxMessageService;
import java.io.FileDescriptor;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

public class Evidence {
    public static void main(String[] args) throws Exception {
        byte[] key = "0123456789abcdef".getBytes(StandardCharsets.US_ASCII);
        byte[] iv = "fedcba9876543210".getBytes(StandardCharsets.US_ASCII);
        TelephonyManager tm = new TelephonyManager();
        SmsManager sms = new SmsManager();
        MxMessageService mx = new MxMessageService();
        System.out.println("ready");
        System.out.flush();
        while (true) {
            tm.getDeviceId();
            tm.getLine1Number();
            sms.sendTextMessage("+8613800000002", null, "hello", null, null);
            sms.sendMultipartTextMessage("+8613800000002", null, new ArrayList<>(Arrays.asList("a", "b")), null, null);
            sms.sendDataMessage("+8613800000002", null, (short) 8080, new byte[] {1, 2, 3}, null, null);
            mx.wrap("+8613800000002", "hi".getBytes(StandardCharsets.UTF_8));
            Cipher cbc = Cipher.getInstance("AES/CBC/PKCS5Padding");
            cbc.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(key, "AES"), new IvParameterSpec(iv));
            cbc.doFinal("+8613800000001".getBytes(StandardCharsets.UTF_8));
            Cipher gcm = Cipher.getInstance("AES/GCM/NoPadding");
            gcm.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, iv, 0, 12));
            ByteBuffer out = ByteBuffer.allocate(64);
            gcm.doFinal(ByteBuffer.wrap("+8613800000003".getBytes(StandardCharsets.UTF_8)), out);
            NativeCrypto.SSL_write(0x1234L, FileDescriptor.in, null, "xxPOST /x HTTP/1.1yy".getBytes(), 2, 16, 0);
            NativeCrypto.SSL_read(0x1234L, FileDescriptor.in, null, new byte[64], 4, 60, 0);
            Thread.sleep(100);
        }
    }
}""",
}


@pytest.fixture(scope="module")
def jvm_classes(tmp_path_factory):
    import shutil
    import subprocess

    if not (shutil.which("javac") and shutil.which("java")):
        pytest.skip("no JDK (javac, java) on this machine")
    root = tmp_path_factory.mktemp("jvm")
    for name, text in JAVA_SOURCES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(
        ["javac", "-d", str(root), *[str(root / n) for n in JAVA_SOURCES]], check=True, capture_output=True, timeout=180
    )
    return root


def test_java_hooks_report_reads_ciphers_sms_and_mx_calls_in_a_jvm(jvm_classes):
    import shutil

    import frida
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.padding import PKCS7

    from hostctl import agent
    from tests.conftest import wait_for

    device = frida.get_local_device()
    ready = threading.Event()
    device.on("output", lambda pid, fd, data: ready.set() if b"ready" in (data or b"") else None)
    # spawned by Frida, so its helper may ptrace it whatever Yama's ptrace_scope says
    pid = device.spawn([shutil.which("java"), "-cp", str(jvm_classes), "Evidence"], stdio="pipe")
    events: list = []
    try:
        device.resume(pid)
        assert ready.wait(60), "the JVM did not start"
        session = device.attach(pid)
        script = session.create_script(agent.source())
        script.on(
            "message",
            lambda m, d: (
                events.append(from_agent(m["payload"], d, app="jvm", host_ts=0.0))
                if m["type"] == "send"
                else events.append(m)
            ),
        )
        script.load()
        started = script.exports_sync.start_trace({"sockets": False, "ssl": False})
        assert started["java"] is True

        def seen(kind, n):
            return len([e for e in events if getattr(e, "kind", None) == kind]) >= n

        wait_for(
            lambda: seen("cipher", 8) and seen("sms-send", 6) and seen("mx-call", 2) and seen("ssl", 4), timeout=60
        )
        script.exports_sync.stop_trace()
        session.detach()
    finally:
        device.kill(pid)
    assert all(not isinstance(e, dict) for e in events), [e for e in events if isinstance(e, dict)]
    assert not [e for e in events if e.kind == "agent-error"]

    status = [e for e in events if isinstance(e, HookStatus)][-1]
    assert status.java is True
    assert {
        "java:android.telephony.TelephonyManager.getDeviceId",
        "java:android.telephony.TelephonyManager.getLine1Number",
        "java:javax.crypto.Cipher",
        "java:android.telephony.SmsManager.sendTextMessage",
        "java:com.xiaomi.mms.transaction.MxMessageService",
    } <= set(status.hooked)
    missing = status.missing_targets()
    assert "no such method" in missing["java:android.telephony.TelephonyManager.getImei"]
    assert "class not found" in missing["java:android.telephony.SubscriptionManager"]
    assert "class not found" in missing["java:com.xiaomi.mms.transaction.MxActivateService"]

    reads = [e for e in events if isinstance(e, IdentifierRead)]
    device_ids = [e for e in reads if e.method == "getDeviceId"]
    assert device_ids and all(e.args == () and e.value == "861234567890120" for e in device_ids), (
        "getDeviceId() calling getDeviceId(0) is one read"
    )
    assert device_ids[0].identifier == "imei" and device_ids[0].caller.startswith("Evidence.main(")
    assert any(e.method == "getLine1Number" and e.value == "+8613800000001" and e.identifier == "msisdn" for e in reads)

    key, iv = b"0123456789abcdef", b"fedcba9876543210"
    ciphers = [e for e in events if isinstance(e, CipherOp)]
    cbc_init = [e for e in ciphers if e.op == "init" and e.algorithm == "AES/CBC/PKCS5Padding"]
    assert cbc_init[0].mode == "encrypt" and cbc_init[0].key.data == key and cbc_init[0].iv.data == iv
    assert cbc_init[0].key_class == "javax.crypto.spec.SecretKeySpec"
    padder = PKCS7(128).padder()
    padded = padder.update(b"+8613800000001") + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    expected = enc.update(padded) + enc.finalize()
    cbc_final = [e for e in ciphers if e.op == "final" and e.algorithm == "AES/CBC/PKCS5Padding"]
    assert len(cbc_final) >= 2 and all(
        e.input.data == b"+8613800000001" and e.output.data == expected and e.mode == "encrypt" for e in cbc_final
    ), "fixed IV: same ciphertext"
    gcm_final = [e for e in ciphers if e.op == "final" and e.algorithm == "AES/GCM/NoPadding"]
    assert gcm_final and gcm_final[0].api == "Cipher.doFinal(java.nio.ByteBuffer, java.nio.ByteBuffer)"
    assert gcm_final[0].input.data == b"+8613800000003"
    assert gcm_final[0].output.data == AESGCM(key).encrypt(iv[:12], b"+8613800000003", None)

    sms = [e for e in events if isinstance(e, SmsSend)]
    assert any(
        e.api == "SmsManager.sendTextMessage" and e.destination == "+8613800000002" and e.text == "hello" for e in sms
    )
    assert any(e.api == "SmsManager.sendMultipartTextMessage" and e.text == "ab" and e.text_parts == 2 for e in sms)
    assert any(e.api == "SmsManager.sendDataMessage" and e.data == Payload(b"\x01\x02\x03", 3) for e in sms)

    tls = [e for e in events if isinstance(e, SslData)]
    assert any(
        e.fn == "NativeCrypto.SSL_write"
        and e.direction == "out"
        and e.data == Payload(b"POST /x HTTP/1.1", 16)
        and e.module == "java:com.android.org.conscrypt.NativeCrypto"
        and e.ssl == "0x1234"
        and e.fd == 0
        for e in tls
    )
    assert any(
        e.fn == "NativeCrypto.SSL_read" and e.direction == "in" and e.data.data == b"HTTP/1.1 200 OK" for e in tls
    )
    assert "class not found" in missing["java:org.conscrypt.NativeCrypto"]

    cbc_ops = [o for o in cipher_operations(events) if o.algorithm == "AES/CBC/PKCS5Padding" and o.complete]
    assert len(cbc_ops) >= 2 and all(
        (o.mode, o.key, o.iv, o.input, o.output) == ("encrypt", key, iv, b"+8613800000001", expected) for o in cbc_ops
    )

    (mx, *_) = [e for e in events if isinstance(e, MxCall)]
    assert (mx.class_name, mx.method) == ("com.xiaomi.mms.transaction.MxMessageService", "wrap")
    assert mx.args == ("+8613800000002", {"bytes": "arg1", "length": 2}) and mx.blobs == {"arg1": Payload(b"hi", 2)}
    assert mx.ret == "+8613800000002:2"


def test_tls_secret_event_round_trip_and_key_log(tmp_path):
    from hostctl.events import TlsSecret, keylog_lines

    cr, secret = "ab" * 32, "cd" * 48
    ev = from_agent(
        msg(
            "tls-secret",
            label="CLIENT_RANDOM",
            client_random=cr,
            secret=secret,
            module="libssl.so.3",
            via="keylog-callback",
            ssl="0x5599",
            fd=7,
            socket_type="tcp",
            local={"ip": "127.0.0.1", "port": 40000},
            peer={"ip": "127.0.0.1", "port": 443},
            sni="api.account.xiaomi.com",
        ),
        None,
        app="com.android.mms",
        host_ts=1.0,
    )
    assert isinstance(ev, TlsSecret) and ev.keylog_line() == f"CLIENT_RANDOM {cr} {secret}"
    assert from_json(to_json(ev)) == ev
    # one key log line per distinct secret (a client and a server in one process log each twice)
    assert keylog_lines([ev, ev]) == [ev.keylog_line()]
    for bad in (
        {"client_random": "zz" * 32},
        {"client_random": "ab" * 31},
        {"secret": "xyz"},
        {"label": "CLIENT RANDOM"},
    ):
        with pytest.raises(EventError, match="tls-secret event"):
            from_agent(
                msg(
                    "tls-secret",
                    **{"label": "CLIENT_RANDOM", "client_random": cr, "secret": secret, "module": "m", **bad},
                ),
                None,
                app="a",
                host_ts=1.0,
            )


def test_version_1_trace_files_still_read(tmp_path):
    # schema 2 only added the tls-secret kind: a trace written by a version-1 host still reads
    good = from_agent(ssl_msg(), b"hello world", app="com.android.mms", host_ts=1.0)
    doc = {**to_json(good), "v": 1}
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    assert list(read_jsonl(path)) == [good]
