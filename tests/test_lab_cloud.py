"""The lab runs the Cloud Messaging service: activation is proved by an SMS through the carrier."""

from __future__ import annotations

import json
import socket

import pytest

from hostctl.emulator.cloudmsg import ACCOUNT_HOST, CHAT_HOST
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import free_port


@pytest.fixture(scope="module")
def clab(tmp_path_factory):
    with LabThread(
        LabConfig(adb_port=free_port(), handsets=2, with_apps=False, modem=False, home=tmp_path_factory.mktemp("cloud"))
    ) as lt:
        yield lt


def request(lt, host: str, method: str, path: str, body: dict) -> dict:
    addr, port = lt.lab.cloud.hosts()[host]
    raw = socket.create_connection((addr, port), timeout=10)
    with lt.lab.cloud.ca.client_context().wrap_socket(raw, server_hostname=host) as s:
        data = json.dumps(body).encode()
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return json.loads(reply.partition(b"\r\n\r\n")[2])


def test_status_lists_the_service_on_loopback(clab):
    info = clab.lab.status()["cloud"]
    assert set(info["hosts"]) >= {ACCOUNT_HOST, CHAT_HOST, "resolver.msg.xiaomi.net"}
    assert all(v.startswith("127.0.0.1:") for v in info["hosts"].values())
    assert info["gateway"] == clab.lab.cloud.cm.gateway


def test_activation_by_sms_through_the_carrier(clab):
    lh = clab.lab.handsets[0]
    number = lh.identity.sims[0].msisdn
    tok = request(clab, ACCOUNT_HOST, "POST", "/pass/activate/token", {"number": number})
    assert request(clab, ACCOUNT_HOST, "GET", "/pass/activate/status", {"number": number})["activate_status"] == 2

    async def sms():
        return lh.send_sms(tok["gateway"], f"MX activation {tok['token']}")

    _, records = clab.call(sms())
    assert records[0].status == "delivered"
    assert clab.lab.carrier.records(tok["gateway"])[-1].segment.sender == number
    creds = request(clab, ACCOUNT_HOST, "GET", "/pass/activate/status", {"number": number})
    assert creds["activate_status"] == 3 and creds["mid"]
    # another handset cannot activate this number with the token
    other = clab.lab.handsets[1]

    async def forged():
        return other.send_sms(tok["gateway"], tok["token"])

    clab.call(forged())
    assert clab.lab.cloud.cm.account(other.identity.sims[0].msisdn) is None


def test_a_protected_number_whose_base64_begins_with_plus_is_still_resolved():
    """A protected number's Base64 begins with "+" one time in 64 ("+3tUmz/jOjgwB6dJwzHVog==",
    seen in a real audit run): the service must still decrypt it, not take it for E.164. Before
    the fix the looked-up handset stayed "offline" and ip-when-online flipped."""
    import types

    from hostctl.emulator.lab import Lab

    class Build:
        def unwire(self, what, value, sim):
            assert (what, sim) == ("number", 0)
            return {"+3tUmz/jOjgwB6dJwzHVog==": "+8613800012282"}.get(value)

    fake = types.SimpleNamespace(line_of=lambda sender: (Build(), 0))
    assert Lab._resolve_number(fake, "+3tUmz/jOjgwB6dJwzHVog==", "+8613800610765") == "+8613800012282"
    assert Lab._resolve_number(fake, "+8613800012282", "+8613800610765") == "+8613800012282"  # E.164 as is
    assert Lab._resolve_number(fake, "AAAA", None) == "AAAA"  # no sender: nothing to decrypt with
