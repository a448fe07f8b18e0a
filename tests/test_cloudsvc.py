"""The Cloud Messaging service over real TLS on loopback, with the lab CA and real host names."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl

import pytest

from hostctl.emulator.cloudmsg import ACCOUNT_HOST, CHAT_HOST, RESOLVER_HOST, CloudMessaging
from hostctl.emulator.cloudsvc import CloudService
from hostctl.emulator.labca import ensure_ca

A, B = "+8613800000001", "+8613800000002"


def https(
    ca, port: int, host: str, method: str, path: str, body: dict | None = None, tls: bool = True
) -> tuple[int, dict]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ca.client_context().wrap_socket(raw, server_hostname=host) if tls else raw
    with sock:
        data = json.dumps(body).encode() if body is not None else b""
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


@pytest.fixture
def service(tmp_path):
    ca = ensure_ca(tmp_path / "ca")
    loop = asyncio.new_event_loop()
    svc = CloudService(CloudMessaging(ttl=1.0), ca, tick=0.05)
    loop.run_until_complete(svc.start())
    import threading

    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield svc, ca
    asyncio.run_coroutine_threadsafe(svc.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    loop.close()


def test_services_bind_loopback_only_and_present_real_host_names(service):
    svc, ca = service
    assert set(svc.ports) == {"account", "chat", "resolver"}
    for server in svc._servers:  # loopback only
        assert {sock.getsockname()[0] for sock in server.sockets} == {"127.0.0.1"}
    assert {addr for addr, _ in svc.hosts().values()} == {"127.0.0.1"}
    # a client that checks names accepts each Xiaomi name and refuses another
    for host in (ACCOUNT_HOST, CHAT_HOST):
        raw = socket.create_connection(("127.0.0.1", svc.ports["chat"]), timeout=5)
        ca.client_context().wrap_socket(raw, server_hostname=host).close()
    raw = socket.create_connection(("127.0.0.1", svc.ports["chat"]), timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        ca.client_context().wrap_socket(raw, server_hostname="evil.example.com")
    raw.close()
    st, body = https(ca, svc.ports["resolver"], RESOLVER_HOST, "GET", "/gslb?host=chat", tls=False)
    assert st == 200 and body["chat"] == [f"{CHAT_HOST}:5222"]


async def _channel(ca, port):
    return await asyncio.open_connection("127.0.0.1", port, ssl=ca.client_context(), server_hostname=CHAT_HOST)


async def _rpc(reader, writer, frame):
    writer.write(json.dumps(frame).encode() + b"\n")
    await writer.drain()
    return json.loads(await asyncio.wait_for(reader.readline(), 5))


def test_activation_bind_and_routing_over_tls(service):
    svc, ca = service
    creds = {}
    for number in (A, B):
        st, tok = https(
            ca,
            svc.ports["account"],
            ACCOUNT_HOST,
            "POST",
            "/pass/activate/token",
            {"number": number, "imei": "864804023599400"},
        )
        assert st == 200
        assert svc.cm.gateway_sms(number, tok["token"])  # the activation SMS (the carrier path is the lab's)
        st, creds[number] = https(
            ca, svc.ports["account"], ACCOUNT_HOST, "GET", f"/pass/activate/status?number={number.replace('+', '%2B')}"
        )
        assert creds[number]["activate_status"] == 3
    assert svc.cm.observed[0].fields["imei"] == "864804023599400"  # the tap saw the report field

    async def scenario():
        ra, wa = await _channel(ca, svc.ports["chat"])
        rb, wb = await _channel(ca, svc.ports["chat"])
        assert (await _rpc(ra, wa, {"type": "bind", **{k: creds[A][k] for k in ("mid", "st")}}))["ok"]
        assert (await _rpc(rb, wb, {"type": "bind", **{k: creds[B][k] for k in ("mid", "st")}}))["ok"]
        assert (await _rpc(ra, wa, {"type": "presence", "id": "p", "number": B}))["online"] is True
        assert (await _rpc(ra, wa, {"type": "message", "id": "m1", "to": B, "body": "hello"}))["status"] == "sent"
        got = json.loads(await asyncio.wait_for(rb.readline(), 5))
        assert got == {"type": "message", "id": "m1", "from": A, "body": "hello"}
        wb.write(b'{"type":"ack","id":"m1"}\n')
        assert json.loads(await asyncio.wait_for(ra.readline(), 5))["status"] == "delivered"
        wb.close()
        await asyncio.sleep(0.1)
        assert (await _rpc(ra, wa, {"type": "presence", "id": "p2", "number": B}))["online"] is False
        assert (await _rpc(ra, wa, {"type": "message", "id": "m2", "to": B, "body": "x"}))["status"] == "sent"
        failed = json.loads(await asyncio.wait_for(ra.readline(), 5))  # TTL 1 s, then failed
        assert failed["status"] == "failed" and failed["id"] == "m2"
        assert svc.cm.retained() == {"messages": 0, "bytes": 0}
        wa.write(b"not json\n")
        assert "not a JSON frame" in json.loads(await asyncio.wait_for(ra.readline(), 5))["error"]
        wa.close()

    asyncio.run(scenario())


# --- slow and dropped clients (issue 18.10) ------------------------------------------------------


def _accounts(cm: CloudMessaging, n: int) -> list:
    out = []
    for i in range(n):
        number = f"+86138100{i:05d}"
        cm.gateway_sms(number, cm.request_activation(number))
        out.append(cm.account(number))
    return out


async def _bound(ca, port: int, acct) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ca.client_context(), server_hostname=CHAT_HOST)
    w.write(json.dumps({"type": "bind", "mid": acct.mid, "st": acct.st}).encode() + b"\n")
    assert json.loads(await r.readline())["ok"] is True
    return r, w


def test_clients_that_vanish_mid_flood_leave_no_warning_or_traceback(tmp_path, caplog):
    """Half the clients drop their TCP connection (FIN, no TLS close_notify) while the other half
    flood them with messages: the service must stop writing to them, not log asyncio's "SSL
    connection is closed" once per write (547 lines in the issue's run)."""
    ca = ensure_ca(tmp_path / "ca")

    async def run():
        svc = CloudService(CloudMessaging(ttl=5.0, observe=False), ca)
        await svc.start()
        accts = _accounts(svc.cm, 20)
        senders = [await _bound(ca, svc.ports["chat"], a) for a in accts[:10]]
        victims = [await _bound(ca, svc.ports["chat"], a) for a in accts[10:]]
        batch = b"".join(
            json.dumps(
                {"type": "message", "id": f"m{i}-{j}", "to": accts[10 + j % 10].number, "body": "x" * 200}
            ).encode()
            + b"\n"
            for i in range(30)
            for j in range(10)
        )
        for round_ in range(20):
            for _, w in senders:
                w.write(batch.replace(b'"m', b'"r%d' % round_))
            if round_ == 3:
                for _, w in victims:  # gone without a goodbye
                    w.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            await asyncio.sleep(0.01)
        for _, w in senders:
            await w.drain()
        await asyncio.sleep(0.5)
        await svc.stop()
        for _, w in senders + victims:
            w.close()

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        asyncio.run(run())
    noise = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]
    assert noise == []


def test_stopping_with_clients_connected_logs_no_traceback(tmp_path, caplog):
    """A handler cancelled when the service stops must end quietly: asyncio 3.11 logs "Exception
    in callback ... _chat" for a client_connected_cb task that ends cancelled."""
    ca = ensure_ca(tmp_path / "ca")

    async def run():
        svc = CloudService(CloudMessaging(observe=False), ca)
        await svc.start()
        accts = _accounts(svc.cm, 3)
        clients = [await _bound(ca, svc.ports["chat"], a) for a in accts]
        slow = await asyncio.open_connection(
            "127.0.0.1", svc.ports["account"], ssl=ca.client_context(), server_hostname=ACCOUNT_HOST
        )  # an HTTP client mid-request
        slow[1].write(b"POST /pass/activate/token HTTP/1.1\r\nHost: " + ACCOUNT_HOST.encode() + b"\r\n")
        await asyncio.sleep(0.2)
        return svc, clients + [slow]

    async def main():
        svc, clients = await run()
        await svc.stop()
        await asyncio.sleep(0.1)
        for _, w in clients:
            w.close()

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        asyncio.run(main())
        # and the harsher end: the loop is torn down with handlers still waiting
        loop = asyncio.new_event_loop()
        svc, clients = loop.run_until_complete(run())
        loop.run_until_complete(svc.stop())
        loop.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def test_the_service_process_flooded_then_stopped_logs_no_traceback(tmp_path):
    """The benchmark's run in small (20 TLS clients flooding each other for 2 s, then the
    service told to stop while they are still connected): the service's stderr stays empty of
    tracebacks, "Exception in callback" and "SSL connection is closed"."""
    import subprocess
    import sys

    from benchmarks import bench_cloudmsg as bench

    ca = ensure_ca(tmp_path / "ca")
    log = open(tmp_path / "service.log", "w+")  # noqa: SIM115 - the service's stderr; read, then closed below
    svc = subprocess.Popen(
        [sys.executable, "-m", "hostctl.emulator.cloudsvc", str(tmp_path / "ca"), "5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        ports = json.loads(svc.stdout.readline())["ports"]
        n = 20

        async def tokens():
            return [
                {
                    "number": f"+86138{i:08d}",
                    "token": (
                        await bench._https(ca, ports["account"], "/pass/activate/token", {"number": f"+86138{i:08d}"})
                    )["token"],
                }
                for i in range(n)
            ]

        creds = bench._activate_all(svc, ports, ca, asyncio.run(tokens()))
        old, bench.CLIENTS = bench.CLIENTS, n
        try:
            routed = asyncio.run(bench._drive(ca, ports["chat"], 2.0, creds, CHAT_HOST, svc.pid, []))
        finally:
            bench.CLIENTS = old
        assert routed > 0
    finally:
        svc.stdin.close()
        svc.wait(30)
    log.seek(0)
    noise = [
        line
        for line in log
        if any(w in line for w in ("Traceback", "Exception in callback", "SSL connection is closed", "Error"))
    ]
    log.close()
    assert noise == []
