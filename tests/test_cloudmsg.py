"""The Cloud Messaging service's state machine (hostctl.emulator.cloudmsg), without I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl.emulator.cloudmsg import (
    ACCOUNT_HOST,
    CHAT_HOST,
    GATEWAY_NUMBER,
    RESOLVER_HOST,
    CloudMessaging,
    ProtocolError,
    parse_line,
)

A, B = "+8613800000001", "+8613800000002"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def activate(cm: CloudMessaging, number: str) -> dict:
    st_, body = cm.http(ACCOUNT_HOST, "POST", "/pass/activate/token", {"number": number, "imei": "x"})
    assert st_ == 200 and body["gateway"] == GATEWAY_NUMBER
    assert cm.http(ACCOUNT_HOST, "GET", "/pass/activate/status", {"number": number})[1]["activate_status"] == 2
    assert not cm.gateway_sms(number, "wrong token")
    assert cm.gateway_sms(number, f"MX activation {body['token']}")
    st_, creds = cm.http(ACCOUNT_HOST, "GET", "/pass/activate/status", {"number": number})
    assert creds["activate_status"] == 3
    return creds


def online(cm: CloudMessaging, conn: int, number: str) -> None:
    creds = activate(cm, number)
    cm.open(conn)
    out = cm.receive(conn, {"type": "bind", "mid": creds["mid"], "st": creds["st"]})
    assert out[0].frame == {"type": "bind-result", "ok": True, "number": number}


def frames(out, conn):
    return [d.frame for d in out if d.conn == conn]


def test_activation_needs_the_token_by_sms_from_that_number():
    cm = CloudMessaging()
    st_, body = cm.http(ACCOUNT_HOST, "POST", "/pass/activate/token", {"number": A})
    assert not cm.gateway_sms(B, body["token"])  # another number cannot activate A
    cm.open(1)
    out = cm.receive(1, {"type": "bind", "mid": "10000001", "st": "x"})
    assert out[0].frame["ok"] is False
    assert cm.http(RESOLVER_HOST, "GET", "/gslb", {})[1] == {"chat": [f"{CHAT_HOST}:5222"]}


def test_online_receiver_gets_it_over_ip_with_sent_and_delivered_receipts():
    cm = CloudMessaging()
    online(cm, 1, A)
    online(cm, 2, B)
    assert cm.presence(B) and frames(cm.receive(1, {"type": "presence", "id": "p", "number": B}), 1)[0]["online"]
    out = cm.receive(1, {"type": "message", "id": "m1", "to": B, "body": "hi"})
    assert frames(out, 1) == [{"type": "receipt", "id": "m1", "status": "sent"}]
    assert frames(out, 2) == [{"type": "message", "id": "m1", "from": A, "body": "hi"}]
    assert cm.retained() == {"messages": 0, "bytes": 0}  # routed, never stored
    out = cm.receive(2, {"type": "ack", "id": "m1"})
    assert frames(out, 1) == [{"type": "receipt", "id": "m1", "status": "delivered", "to": B}]


def test_offline_receiver_store_then_fail_after_ttl_and_nothing_kept():
    clock = Clock()
    cm = CloudMessaging(ttl=10, clock=clock)
    online(cm, 1, A)
    activate(cm, B)
    assert not cm.presence(B)
    cm.receive(1, {"type": "message", "id": "m1", "to": B, "body": "secret text"})
    assert cm.retained() == {"messages": 1, "bytes": 11}
    clock.now += 9.9
    assert cm.tick() == []
    clock.now += 0.2
    out = cm.tick()
    assert frames(out, 1) == [
        {"type": "receipt", "id": "m1", "status": "failed", "to": B, "reason": "receiver offline"}
    ]
    assert cm.retained() == {"messages": 0, "bytes": 0}


def test_stored_message_is_delivered_when_the_receiver_binds_within_ttl():
    clock = Clock()
    cm = CloudMessaging(ttl=10, clock=clock)
    online(cm, 1, A)
    cm.receive(1, {"type": "message", "id": "m1", "to": B, "body": "later"})
    clock.now += 5
    online(cm, 2, B)
    # the bind's own output carried the stored message
    assert cm.retained()["messages"] == 0
    clock.now += 10
    assert cm.tick() == []  # not failed: it was delivered


def test_channel_rules():
    cm = CloudMessaging()
    cm.open(1)
    assert cm.receive(1, {"type": "message", "to": B, "body": "x"})[0].frame["error"] == "bind first"
    assert "unknown frame type" in cm.receive(1, {"type": "nope"})[0].frame["error"]
    with pytest.raises(ProtocolError):
        cm.receive(99, {"type": "ping"})
    online(cm, 2, A)
    acct = cm.account(A)
    cm.open(3)  # a second channel for A replaces the first
    out = cm.receive(3, {"type": "bind", "mid": acct.mid, "st": acct.st})
    assert frames(out, 2) == [{"type": "closed", "reason": "replaced"}] and cm.presence(A)
    cm.close(3)
    assert not cm.presence(A)
    with pytest.raises(ProtocolError):
        parse_line(b"[1, 2]")
    with pytest.raises(ProtocolError):
        parse_line(b"\xff{")


def test_the_tap_sees_every_request_with_its_fields():
    cm = CloudMessaging()
    cm.http(ACCOUNT_HOST, "POST", "/report/boot", {"imei": "864804023599400", "carrier": "CMCC"})
    assert cm.observed[-1].endpoint == "account" and cm.observed[-1].fields["imei"] == "864804023599400"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["type", "id", "to", "body", "mid", "st", "number"]),
            st.one_of(
                st.text(max_size=8),
                st.integers(),
                st.none(),
                st.sampled_from(["bind", "message", "ack", "presence", "ping"]),
            ),
            max_size=5,
        ),
        max_size=20,
    )
)
def test_random_frames_never_break_the_service(frames_in):
    cm = CloudMessaging()
    online(cm, 1, A)
    for f in frames_in:
        for d in cm.receive(1, f):
            assert d.line().endswith(b"\n")
    cm.tick()
    assert cm.presence(A)  # no frame from a bound channel can unbind or break it
