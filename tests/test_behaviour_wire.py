"""Every event of the two shipped behaviours produces the traffic it describes: the service's
received records carry each field with the protection the profile gives it."""

from __future__ import annotations

import time

import pytest

from hostctl.emulator import screens
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.model.protections import matches
from tests.conftest import free_port
from tests.test_mx_app import wait_for


def received(cm, request):
    """The service's record of this request: same endpoint, same path (HTTP) or method (chat
    report), and the same protected field values."""
    for o in cm.observed:
        if o.endpoint != request.endpoint or o.fields != request.fields:
            continue
        if (request.endpoint == "chat" and o.path == request.method) or (
            request.endpoint != "chat" and o.path == request.path
        ):
            return o
    return None


def check_protection(lh, request, record):
    behaviour = lh.profile.behaviour
    sim = lh.identity.sims[request.slot or 0]
    for name, value in record.fields.items():
        key = request.keys.get(name)
        material = behaviour.key_material(key, sim) if key else None
        assert matches(request.plaintext[name], value, request.protections[name], material), name


@pytest.mark.parametrize("profile", ["miui-v5-2014-07", "miui-v5-2014-08-10"])
def test_every_event_puts_its_fields_on_the_wire_with_their_protection(profile, tmp_path):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=2,
            modem=False,
            relay=False,
            consoles=False,
            profile=profile,
            home=tmp_path / "h",
        )
    ) as lt:
        a, b = lt.lab.handsets
        cm = lt.lab.cloud.cm
        if profile == "miui-v5-2014-07":  # Cloud Messaging on by default: bound at boot, unasked
            wait_for(lambda: cm.presence(a.identity.sims[0].msisdn) and cm.presence(b.identity.sims[0].msisdn))
        else:  # opt-in: before it, nothing at all went to Xiaomi (nothing identifying, a fortiori)
            assert not cm.presence(a.identity.sims[0].msisdn)
            time.sleep(0.5)
            assert [o for o in cm.observed if o.endpoint in ("account", "chat", "resolver")] == []

        async def act():
            screens.set_cloud_messaging(a.handset, True, 0)  # cm_enabled, registration
            screens.set_cloud_messaging(b.handset, True, 0)

        lt.call(act())
        wait_for(lambda: cm.presence(a.identity.sims[0].msisdn) and cm.presence(b.identity.sims[0].msisdn))

        async def more():
            a.add_contact(b.identity.sims[0].msisdn)
            a.micloud_login()
            a.send_sms(b.identity.sims[0].msisdn, "plain sms")  # sms_sent (a), sms_received (b)
            assert a.place_call(b.identity.sims[0].msisdn) == []  # neither build reports calls

        lt.call(more())
        from tests.test_mx_app import send_via_ui  # conversation_opened, presence, message_send

        send_via_ui(lt, a, b.identity.sims[0].msisdn, "hello there")
        wait_for(lambda: {"conversation_opened", "message_send"} <= {r.event for r in a.emitted})
        events = {r.event for r in a.emitted + b.emitted}
        expected = {
            "cm_enabled",
            "registration",
            "contact_added",
            "micloud_login",
            "sms_sent",
            "sms_received",
            "conversation_opened",
            "presence_lookup",
            "message_send",
        }
        if profile == "miui-v5-2014-07":
            expected.add("boot")  # the OTA reports nothing at boot while CM is off
        assert expected <= events, expected - events
        for lh in (a, b):
            for request in lh.emitted:
                record = wait_for(lambda r=request: received(cm, r))
                check_protection(lh, request, record)
                assert record.endpoint == request.endpoint
        if profile == "miui-v5-2014-07":  # the leaky build: the number and IMEI readable inside TLS
            boots = [r for r in a.emitted if r.event == "boot" and r.endpoint == "account"]
            assert any(r.fields.get("phone") == a.identity.sims[0].msisdn for r in boots)
        else:  # the OTA: no phone number in clear in anything the app sent over IP
            numbers = {s.msisdn for lh in (a, b) for s in lh.identity.sims}
            over_ip = [o for o in cm.observed if o.endpoint in ("account", "chat", "resolver")]
            assert over_ip
            for o in over_ip:
                assert not numbers & set(o.fields.values()), o
                assert not any(n in v for n in numbers for v in o.fields.values()), o


def test_the_ota_build_never_puts_message_content_in_clear_on_the_wire(tmp_path):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=2,
            modem=False,
            relay=False,
            consoles=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path / "h",
        )
    ) as lt:
        a, b = lt.lab.handsets
        cm = lt.lab.cloud.cm

        async def act():
            screens.set_cloud_messaging(a.handset, True, 0)
            screens.set_cloud_messaging(b.handset, True, 0)

        lt.call(act())
        wait_for(lambda: cm.presence(a.identity.sims[0].msisdn) and cm.presence(b.identity.sims[0].msisdn))
        from tests.test_mx_app import rows, send_via_ui

        send_via_ui(lt, a, b.identity.sims[0].msisdn, "secret words")
        got = wait_for(lambda: [r for r in rows(b, "content://sms/inbox") if r["body"] == "secret words"])
        assert got[0]["mx_status"] == 65537  # decrypted by the receiving app
        frames = [o for o in cm.observed if o.endpoint == "chat" and o.path == "message"]
        assert frames and all("secret words" not in v for o in frames for v in o.fields.values())


# --- issue 15.7: a build that leaks through a layer ------------------------------------------------


def _gzip_leak_profile(tmp_path):
    """The OTA build plus one leak: the IMEI in a gzip'd JSON body, over clear HTTP, at boot."""
    from pathlib import Path

    import yaml

    from hostctl.emulator.profiles import load_profile

    root = Path(__file__).resolve().parent.parent
    ota = yaml.safe_load((root / "hostctl/emulator/profiles/miui-v5-2014-08-10.yaml").read_text())
    behaviour = ota["behaviour"]
    behaviour["endpoints"] = {
        "account": {"host": "api.account.xiaomi.com", "port": 443, "transport": "tls"},
        "chat": {"host": "app.chat.xiaomi.net", "port": 5222, "transport": "tls"},
        "resolver": {"host": "resolver.msg.xiaomi.net", "port": 80, "transport": "http"},
        "stats": {
            "host": "resolver.msg.xiaomi.net",
            "port": 80,
            "transport": "http",
            "path": "/stat",
            "encoding": "gzip",
        },
    }
    behaviour["events"]["boot"] = list(behaviour["events"].get("boot") or []) + [
        {"endpoint": "stats", "fields": {"d": {"source": "imei", "protection": "plain"}}}
    ]
    path = tmp_path / "gzip-leak.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "extends": "miui-v5-2014-08-10",
                "name": "leaky-gzip-imei",
                "description": "the OTA with the IMEI in a gzip'd HTTP body at boot",
                "behaviour": behaviour,
            }
        )
    )
    profile = load_profile(path)
    assert profile.behaviour.endpoints["stats"].encoding == "gzip"
    return path


def test_an_endpoint_encoding_is_parsed_and_checked(tmp_path):
    from hostctl.emulator.behaviour import parse_behaviour
    from hostctl.emulator.profiles import ProfileError

    eps = {
        "account": {"host": "a.xiaomi.com", "port": 443, "transport": "tls"},
        "chat": {"host": "c.xiaomi.net", "port": 5222, "transport": "tls"},
        "resolver": {"host": "r.xiaomi.net", "port": 80, "transport": "http", "encoding": "br"},
    }
    with pytest.raises(ProfileError, match=r"behaviour\.endpoints\.resolver\.encoding"):
        parse_behaviour({"endpoints": eps}, "x.yaml")


def test_audit_fails_a_build_leaking_the_imei_in_a_gzip_body(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    profile = _gzip_leak_profile(tmp_path)
    env = dict(os.environ, HOSTCTL_HOME=str(tmp_path / "home"))
    env.pop("ANDROID_ADB_SERVER_PORT", None)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hostctl",
            "audit",
            "--emulator",
            "--profile",
            str(profile),
            "--out",
            str(tmp_path / "runs"),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.stdout, f"the audit printed no report (exit {r.returncode}): {r.stderr[-3000:]}"
    doc = json.loads(r.stdout)
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert status["no-identifiers-before-opt-in"] == "FAIL" and status["transport-secure"] == "FAIL", status
    before = next(c for c in doc["checks"] if c["id"] == "no-identifiers-before-opt-in")
    ev = [e for e in before["evidence"] if "imei" in (e["identifier"] or "")]
    assert ev and all("http-body>gzip" in e["text"] for e in ev), before["evidence"]
    assert ev[0]["host"] == "resolver.msg.xiaomi.net"
    secure = next(c for c in doc["checks"] if c["id"] == "transport-secure")
    sec = [e for e in secure["evidence"] if "imei" in (e["identifier"] or "")]
    assert sec and all("http-body>gzip" in e["text"] for e in sec), secure["evidence"]


# --- issue 15.7: HTTP/2 and WebSocket endpoints ---------------------------------------------------------


def _layer_leak_profile(tmp_path, transport, encoding):
    """The OTA build plus one leak: the IMEI at boot in a report over a ``transport`` endpoint
    (h2/wss to the account host over TLS, h2c/ws to the resolver host in the clear)."""
    from pathlib import Path

    import yaml

    from hostctl.emulator.profiles import load_profile

    root = Path(__file__).resolve().parent.parent
    ota = yaml.safe_load((root / "hostctl/emulator/profiles/miui-v5-2014-08-10.yaml").read_text())
    behaviour = ota["behaviour"]
    tls = transport in ("h2", "wss")
    behaviour["endpoints"] = {
        "account": {"host": "api.account.xiaomi.com", "port": 443, "transport": "tls"},
        "chat": {"host": "app.chat.xiaomi.net", "port": 5222, "transport": "tls"},
        "resolver": {"host": "resolver.msg.xiaomi.net", "port": 80, "transport": "http"},
        "stats": {
            "host": "api.account.xiaomi.com" if tls else "resolver.msg.xiaomi.net",
            "port": 443 if tls else 80,
            "transport": transport,
            "path": "/stat",
            "encoding": encoding,
        },
    }
    behaviour["events"]["boot"] = list(behaviour["events"].get("boot") or []) + [
        {"endpoint": "stats", "fields": {"d": {"source": "imei", "protection": "plain"}}}
    ]
    path = tmp_path / f"{transport}-leak.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "extends": "miui-v5-2014-08-10",
                "name": f"leaky-{transport}-imei",
                "description": f"the OTA with the IMEI over {transport} ({encoding}) at boot",
                "behaviour": behaviour,
            }
        )
    )
    profile = load_profile(path)
    assert (profile.behaviour.endpoints["stats"].transport, profile.behaviour.endpoints["stats"].encoding) == (
        transport,
        encoding,
    )
    return path


def _audit(profile, tmp_path):
    """``hostctl audit --emulator`` on ``profile``: (the JSON report, the run folder)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, HOSTCTL_HOME=str(tmp_path / "home"))
    env.pop("ANDROID_ADB_SERVER_PORT", None)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hostctl",
            "audit",
            "--emulator",
            "--profile",
            str(profile),
            "--out",
            str(tmp_path / "runs"),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.stdout, f"the audit printed no report (exit {r.returncode}): {r.stderr[-3000:]}"
    doc = json.loads(r.stdout)
    return doc, tmp_path / "runs" / doc["run"]["id"]


def _tshark(run, label, display_filter, *fields):
    """tshark's own reading of a handset's capture (TLS decrypted with the agent's key log)."""
    import shutil
    import subprocess

    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (make debian-clients)")
    hs = run / "handsets" / label
    args = [tshark, "-n", "-r", str(hs / "wire.pcapng"), "-Y", display_filter, "-T", "fields"]
    if (hs / "trace" / "sslkeylog.txt").exists():
        args[2:2] = ["-o", f"tls.keylog_file:{hs / 'trace' / 'sslkeylog.txt'}"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines() if line.strip()]


def test_an_endpoint_transport_is_parsed_and_checked():
    from hostctl.emulator.behaviour import parse_behaviour
    from hostctl.emulator.profiles import ProfileError

    def endpoints(**stats):
        return {
            "account": {"host": "a.xiaomi.com", "port": 443, "transport": "tls"},
            "chat": {"host": "c.xiaomi.net", "port": 5222, "transport": "tls"},
            "resolver": {"host": "r.xiaomi.net", "port": 80, "transport": "http"},
            "stats": {"host": "r.xiaomi.net", "port": 80, **stats},
        }

    for transport in ("h2", "h2c", "wss", "ws"):
        b = parse_behaviour({"endpoints": endpoints(transport=transport)}, "x.yaml")
        assert (b.endpoints["stats"].transport, b.endpoints["stats"].encoding) == (transport, "identity")
    assert (
        parse_behaviour({"endpoints": endpoints(transport="h2", encoding="gzip")}, "x.yaml").endpoints["stats"].encoding
        == "gzip"
    )
    assert (
        parse_behaviour({"endpoints": endpoints(transport="ws", encoding="permessage-deflate")}, "x.yaml")
        .endpoints["stats"]
        .encoding
        == "permessage-deflate"
    )
    with pytest.raises(ProfileError, match=r"behaviour\.endpoints\.stats\.transport.*quic"):
        parse_behaviour({"endpoints": endpoints(transport="quic")}, "x.yaml")
    # a coding the transport cannot carry: gzip is an HTTP body's, permessage-deflate a WebSocket's
    with pytest.raises(ProfileError, match=r"behaviour\.endpoints\.stats\.encoding.*transport wss"):
        parse_behaviour({"endpoints": endpoints(transport="wss", encoding="gzip")}, "x.yaml")
    with pytest.raises(ProfileError, match=r"behaviour\.endpoints\.stats\.encoding.*transport h2c"):
        parse_behaviour({"endpoints": endpoints(transport="h2c", encoding="permessage-deflate")}, "x.yaml")


@pytest.mark.parametrize("transport", ["h2c", "h2"])
def test_audit_fails_a_build_leaking_the_imei_over_http2(transport, tmp_path):
    """The report body is gzip'd inside HTTP/2 DATA, so only the h2-data>gzip layer reads it: in
    the clear (h2c, prior knowledge) from the wire, over TLS (ALPN h2) from the agent's TLS
    plaintext. tshark's HTTP/2 dissector reads the same request (RFC 9113 frames, HPACK)."""
    doc, run = _audit(_layer_leak_profile(tmp_path, transport, "gzip"), tmp_path)
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert status["no-identifiers-before-opt-in"] == "FAIL", status
    before = next(c for c in doc["checks"] if c["id"] == "no-identifiers-before-opt-in")
    ev = [e for e in before["evidence"] if "imei" in (e["identifier"] or "")]
    assert ev and all("h2-data>gzip" in e["text"] for e in ev), before["evidence"]
    if transport == "h2c":
        assert all("wire>h2-data>gzip" in e["text"] for e in ev), ev
    else:  # over TLS: the agent's plaintext, and the wire decrypted with the trace's secrets
        assert any("tls-plaintext>h2-data>gzip" in e["text"] for e in ev), ev
        assert any(e["file"].endswith("wire.pcapng") for e in ev), ev
    host = "resolver.msg.xiaomi.net" if transport == "h2c" else "api.account.xiaomi.com"
    assert {e["host"] for e in ev} == {host}  # h2c: named by the request's :authority
    assert status["transport-secure"] == ("FAIL" if transport == "h2c" else "PASS"), status
    rows = _tshark(run, "hs1", "http2.type == 1", "http2.header.name", "http2.header.value")
    requests = [dict(zip(n.split(","), v.split(","))) for n, v in rows if ":method" in n.split(",")]
    assert {
        (r[":scheme"], r[":authority"], r[":path"], r["content-encoding"]) for r in requests if r[":path"] == "/stat"
    } == {("http" if transport == "h2c" else "https", host, "/stat", "gzip")}


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_audit_fails_a_build_leaking_the_imei_over_websocket_with_permessage_deflate(transport, tmp_path):
    """A client's frames are masked (RFC 6455 5.3) and the message deflated (RFC 7692), so no
    digit of the IMEI is on the wire as-is: only the websocket>permessage-deflate layer reads it.
    tshark agrees: a masked text frame with RSV1 (compressed) whose inflated text holds the IMEI."""
    import json

    doc, run = _audit(_layer_leak_profile(tmp_path, transport, "permessage-deflate"), tmp_path)
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert status["no-identifiers-before-opt-in"] == "FAIL", status
    before = next(c for c in doc["checks"] if c["id"] == "no-identifiers-before-opt-in")
    ev = [e for e in before["evidence"] if "imei" in (e["identifier"] or "")]
    assert ev and all("websocket>permessage-deflate" in e["text"] for e in ev), before["evidence"]
    if transport == "ws":
        assert all("wire>websocket>permessage-deflate" in e["text"] for e in ev), ev
    else:  # over TLS: the agent's plaintext, and the wire decrypted with the trace's secrets
        assert any("tls-plaintext>websocket>permessage-deflate" in e["text"] for e in ev), ev
        assert any(e["file"].endswith("wire.pcapng") for e in ev), ev
    wire = json.loads((run / "handsets" / "hs1" / "wire-check.json").read_text())
    imei = next(i["value"] for i in wire["identifiers"] if i["identifier"] == "hs1 imei0")
    pcap = (run / "handsets" / "hs1" / "wire.pcapng").read_bytes()
    assert imei.encode() not in pcap
    rows = _tshark(
        run, "hs1", "websocket.opcode == 1 && websocket.mask == 1", "websocket.rsv", "websocket.payload.text"
    )
    assert [(rsv, json.loads(text)) for rsv, text in rows] == [("0x04", {"d": imei})]


@pytest.mark.parametrize(
    "transport,encoding,host",
    [
        ("h2", "gzip", "api.account.xiaomi.com"),
        ("h2c", "identity", "resolver.msg.xiaomi.net"),
        ("wss", "permessage-deflate", "api.account.xiaomi.com"),
        ("ws", "identity", "resolver.msg.xiaomi.net"),
        ("tls", "deflate", "api.account.xiaomi.com"),
    ],
)
def test_the_service_takes_a_report_over_each_transport(transport, encoding, host, tmp_path):
    """The app's client (app_main) against the service's server (cloudsvc), both ends with the
    real libraries: the service records the same fields, on the endpoint the host names, and
    HTTP/1.1 clients of the ALPN-capable TLS listener still get HTTP/1.1."""
    import asyncio
    import functools
    import importlib.util
    import types

    from hostctl.emulator import apps
    from hostctl.emulator.cloudmsg import CloudMessaging
    from hostctl.emulator.cloudsvc import CloudService
    from hostctl.emulator.lab import _protocol_libs
    from hostctl.emulator.labca import ensure_ca

    spec = importlib.util.spec_from_file_location("app_main_under_test", apps.APP_MAIN)
    app_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_main)

    async def run():
        ca = ensure_ca(tmp_path)
        svc = CloudService(CloudMessaging(ttl=30, observe=True), ca)
        await svc.start()
        try:
            app = types.SimpleNamespace(hosts={h: "%s:%d" % a for h, a in svc.hosts().items()}, ca=str(ca.ca_cert))
            fields = {"d": "864804024924235", "n": "+8613800138000"}
            tls = transport in ("h2", "wss", "tls")
            if transport in ("h2", "h2c"):
                call = functools.partial(
                    app_main.http2,
                    app,
                    "POST",
                    "/stat",
                    fields,
                    host=host,
                    tls=tls,
                    encoding=encoding,
                    libs=_protocol_libs(),
                )
            elif transport in ("wss", "ws"):
                call = functools.partial(
                    app_main.websocket,
                    app,
                    "/stat",
                    fields,
                    host=host,
                    tls=tls,
                    deflate=encoding == "permessage-deflate",
                    libs=_protocol_libs(),
                )
            else:
                call = functools.partial(
                    app_main.https,
                    app,
                    "POST",
                    "/stat",
                    fields,
                    host=host,
                    tls=tls,
                    encoding=encoding,
                )
            reply = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, call), 30)
            return reply, [(o.endpoint, o.path, o.fields) for o in svc.cm.observed]
        finally:
            await svc.stop()

    reply, observed = asyncio.run(run())
    endpoint = "account" if host == "api.account.xiaomi.com" else "resolver"
    assert observed == [(endpoint, "/stat", {"d": "864804024924235", "n": "+8613800138000"})]
    assert (reply.get("result") == "ok") if endpoint == "account" else reply["chat"] == ["app.chat.xiaomi.net:5222"]
