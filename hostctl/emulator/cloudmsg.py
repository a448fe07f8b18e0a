"""The emulated Xiaomi Cloud Messaging service: the state machine, with no I/O inside.

What MIUI's Messaging app talks to, reduced to what the audit needs to observe and what the
firmware's behaviour depends on:

- **Activation** (api.account.xiaomi.com): the app asks for an activation token, then sends it by
  SMS through the carrier to the service's gateway number, as MIUI's activation does; the gateway
  SMS proves the number, the account is activated and the app gets its credentials (``mid``,
  ``st``, ``sec``) from the status poll.
- **Channel** (app.chat.xiaomi.net:5222): one persistent connection per enabled SIM, bound with
  the credentials; frames are JSON objects, one per line (the real channel is XMPP-style; the
  emulation keeps the shape — bind, presence, message, receipt — not the XML).
- **Presence**: a number is online while a channel is bound for it.
- **Routing**: a message to an online number is pushed on its channel at once; the sender gets
  ``sent`` when the service has it and ``delivered`` when the receiver acknowledges. To an
  offline number it waits in a store with a short TTL; when the TTL ends the sender gets
  ``failed`` (and MIUI resends it as an SMS). **Content is never kept after delivery or expiry**:
  ``retained()`` says what the store holds, for the no-retention check.
- **Resolver** (resolver.msg.xiaomi.net, plain HTTP): where the chat host is.

Every request the service received is also written to ``observed`` (endpoint, path, fields as
they arrived): that is the lab's tap for tests and audits, not the service's own memory.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Account", "CloudMessaging", "Delivery", "Observed", "ProtocolError"]

DEFAULT_TTL = 30.0
OBSERVED_MAX = 20_000  # requests the lab's tap keeps (oldest dropped)
GATEWAY_NUMBER = "+8610657500"  # the service's SMS gateway (activation SMS go here)
ACCOUNT_HOST = "api.account.xiaomi.com"
CHAT_HOST = "app.chat.xiaomi.net"
RESOLVER_HOST = "resolver.msg.xiaomi.net"


class ProtocolError(ValueError):
    """A frame or request the service cannot accept; the channel answers with an error frame."""


@dataclass
class Account:
    number: str
    mid: str
    st: str  # service token
    sec: str  # channel secret
    token: str  # the activation token the gateway SMS must carry
    activated: bool = False
    imei_hash: str = ""


@dataclass(frozen=True)
class Observed:
    """One request as the service received it (the lab's tap)."""

    at: float
    endpoint: str  # "account" | "chat" | "resolver"
    path: str  # HTTP path, or the frame type on the channel
    fields: dict[str, str]
    peer: str = ""  # the channel's bound number, if any


@dataclass(frozen=True)
class Delivery:
    """A frame the I/O layer must send on connection ``conn``."""

    conn: int
    frame: dict[str, Any]

    def line(self) -> bytes:
        return json.dumps(self.frame, separators=(",", ":")).encode() + b"\n"


@dataclass
class _Pending:
    id: str
    sender: str
    recipient: str
    body: str
    expires: float
    sender_conn: int | None


@dataclass
class _Channel:
    conn: int
    number: str | None = None


class CloudMessaging:
    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        gateway: str = GATEWAY_NUMBER,
        observe: bool = True,
        resolve_number: Callable[[str, str | None], str] | None = None,
    ) -> None:
        self.ttl = ttl
        # a number as a build wrote it (plain, or encrypted with the sender SIM's key) -> E.164
        self.resolve_number = resolve_number or (lambda value, sender: value)
        self.clock = clock
        self.gateway = gateway
        self.observe = observe
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}  # number -> account
        self._tokens: dict[str, str | None] = {}  # activation token -> number, once proved
        self._by_mid: dict[str, Account] = {}
        self._channels: dict[int, _Channel] = {}
        self._online: dict[str, int] = {}  # number -> conn
        self._pending: dict[str, _Pending] = {}  # message id -> waiting message
        self._expiry: list[tuple[float, str]] = []  # heap of (expires, id)
        self._ids = itertools.count(1)
        # the lab's tap (a capture of what arrived, for tests and audits; bounded), not the
        # service's memory: ``retained()`` is what the service keeps
        self.observed: collections.deque[Observed] = collections.deque(maxlen=OBSERVED_MAX)
        self.stats = {"routed_ip": 0, "stored": 0, "expired": 0, "delivered_later": 0}

    # -- the tap ------------------------------------------------------------------------------

    def _observe(self, endpoint: str, path: str, fields: dict[str, Any], peer: str = "") -> None:
        if self.observe:
            self.observed.append(Observed(self.clock(), endpoint, path, {k: str(v) for k, v in fields.items()}, peer))

    # -- activation (HTTP on the account host) ------------------------------------------------

    def http(self, host: str, method: str, path: str, fields: dict[str, str]) -> tuple[int, dict]:
        """One HTTP request to ``host`` (Host header / SNI): (status, JSON body)."""
        endpoint = {ACCOUNT_HOST: "account", RESOLVER_HOST: "resolver"}.get(host, host)
        self._observe(endpoint, path, fields)
        if host == RESOLVER_HOST:
            return 200, {"chat": [f"{CHAT_HOST}:5222"]}
        if host != ACCOUNT_HOST:
            return 404, {"error": f"unknown host {host}"}
        if path.startswith("/pass/activate/token"):
            number = fields.get("number", "")
            if not number:  # the number is learnt from the SMS that carries the token
                return 200, {"token": self.request_token(), "gateway": self.gateway}
            if not number.startswith("+"):
                return 400, {"error": "number required (E.164)"}
            return 200, {"token": self.request_activation(number, fields.get("imei", "")), "gateway": self.gateway}
        if path.startswith("/pass/activate/status"):
            token = fields.get("token", "")
            holder = self._tokens.get(token) if token else fields.get("number", "")
            if token and token not in self._tokens:
                return 404, {"activate_status": 0}
            acct = self._accounts.get(holder or "")
            if token and acct is None:
                return 200, {"activate_status": 2}  # the SMS has not arrived yet
            if acct is None:
                return 404, {"activate_status": 0}
            if not acct.activated:
                return 200, {"activate_status": 2}  # activating
            return 200, {"activate_status": 3, "mid": acct.mid, "st": acct.st, "sec": acct.sec, "number": acct.number}
        return 200, {"result": "ok"}  # reports (boot, contacts, ...) are taken as they come

    def request_activation(self, number: str, imei: str = "") -> str:
        """A token for a number given up front (the older flow; see ``request_token``)."""
        with self._lock:
            acct = self._account_for(number)
            acct.token = secrets.token_hex(4)
            acct.imei_hash = hashlib.sha256(imei.encode()).hexdigest()[:16] if imei else ""
            return acct.token

    def request_token(self) -> str:
        """An activation token not yet tied to a number: the SMS that carries it says whose it is
        (so the app never has to send its number to get one)."""
        with self._lock:
            token = secrets.token_hex(4)
            self._tokens[token] = None
            return token

    def _account_for(self, number: str) -> Account:
        acct = self._accounts.get(number)
        if acct is None:
            mid = str(10_000_000 + len(self._accounts) + 1)
            acct = Account(number, mid, secrets.token_hex(8), secrets.token_hex(8), "")
            self._accounts[number] = acct
            self._by_mid[mid] = acct
        return acct

    def gateway_sms(self, sender: str, text: str) -> bool:
        """An SMS to the gateway number: the activation proof. True if it activated an account."""
        self._observe("gateway", "sms", {"sender": sender, "text": text})
        with self._lock:
            pending = next((t for t, n in self._tokens.items() if n is None and t in text), None)
            if pending is not None:
                self._tokens[pending] = sender
                self._account_for(sender).activated = True
                return True
            acct = self._accounts.get(sender)
            if acct is None or not acct.token or acct.token not in text:
                return False
            acct.activated = True
            return True

    def account(self, number: str) -> Account | None:
        with self._lock:
            return self._accounts.get(number)

    # -- channel ------------------------------------------------------------------------------

    def open(self, conn: int) -> None:
        with self._lock:
            self._channels[conn] = _Channel(conn)

    def close(self, conn: int) -> list[Delivery]:
        with self._lock:
            ch = self._channels.pop(conn, None)
            if ch is not None and ch.number is not None and self._online.get(ch.number) == conn:
                del self._online[ch.number]
        return []

    def presence(self, number: str) -> bool:
        with self._lock:
            return number in self._online

    def receive(self, conn: int, frame: dict[str, Any]) -> list[Delivery]:
        """One frame from connection ``conn``; what to send, on which connections."""
        with self._lock:
            ch = self._channels.get(conn)
            if ch is None:
                raise ProtocolError(f"connection {conn} is not open")
            kind = frame.get("type")
            if not isinstance(kind, str):
                return [Delivery(conn, {"type": "error", "error": "frame without a type"})]
            if kind == "report" and isinstance(frame.get("fields"), dict):
                self._observe("chat", str(frame.get("method", "report")), frame["fields"], ch.number or "")
            else:
                self._observe("chat", kind, {k: v for k, v in frame.items() if k != "type"}, ch.number or "")
            handler = _HANDLERS.get(kind)
            if handler is None:
                return [
                    Delivery(conn, {"type": "error", "error": f"unknown frame type {kind!r}", "id": frame.get("id")})
                ]
            if kind not in ("bind", "report") and ch.number is None:
                return [Delivery(conn, {"type": "error", "error": "bind first", "id": frame.get("id")})]
            return handler(self, ch, frame)

    def _bind(self, ch: _Channel, frame: dict[str, Any]) -> list[Delivery]:
        acct = self._by_mid.get(str(frame.get("mid", "")))
        if acct is None or not acct.activated or frame.get("st") != acct.st:
            return [Delivery(ch.conn, {"type": "bind-result", "ok": False, "error": "not authorised"})]
        old = self._online.get(acct.number)
        out = [Delivery(ch.conn, {"type": "bind-result", "ok": True, "number": acct.number})]
        if old is not None and old != ch.conn:  # the newer channel wins
            self._channels.pop(old, None)
            out.append(Delivery(old, {"type": "closed", "reason": "replaced"}))
        ch.number = acct.number
        self._online[acct.number] = ch.conn
        out += self._flush(acct.number, ch.conn)
        return out

    def _presence(self, ch: _Channel, frame: dict[str, Any]) -> list[Delivery]:
        asked = str(frame.get("number", ""))
        number = self.resolve_number(asked, ch.number)
        return [
            Delivery(
                ch.conn,
                {"type": "presence-result", "id": frame.get("id"), "number": asked, "online": number in self._online},
            )
        ]

    def _message(self, ch: _Channel, frame: dict[str, Any]) -> list[Delivery]:
        mid = str(frame.get("id") or f"m{next(self._ids)}")
        to = self.resolve_number(str(frame.get("to", "")), ch.number)
        body = str(frame.get("body", ""))
        sender = ch.number or ""
        out = [Delivery(ch.conn, {"type": "receipt", "id": mid, "status": "sent"})]
        target = self._online.get(to)
        if target is not None:
            self.stats["routed_ip"] += 1
            out.append(Delivery(target, {"type": "message", "id": mid, "from": sender, "body": body}))
            # awaiting the receiver's ack, without the body; forgotten at the TTL if none comes
            expires = self.clock() + self.ttl
            self._pending[mid] = _Pending(mid, sender, to, "", expires, ch.conn)
            heapq.heappush(self._expiry, (expires, mid))
            return out
        self.stats["stored"] += 1
        expires = self.clock() + self.ttl
        self._pending[mid] = _Pending(mid, sender, to, body, expires, ch.conn)
        heapq.heappush(self._expiry, (expires, mid))
        return out

    def _ack(self, ch: _Channel, frame: dict[str, Any]) -> list[Delivery]:
        mid = str(frame.get("id", ""))
        pending = self._pending.pop(mid, None)
        if pending is None or pending.recipient != ch.number:
            return []
        sender_conn = self._online.get(pending.sender)
        if sender_conn is None:
            return []
        return [Delivery(sender_conn, {"type": "receipt", "id": mid, "status": "delivered", "to": pending.recipient})]

    def _report(self, ch: _Channel, frame: dict[str, Any]) -> list[Delivery]:
        return []  # what a build reports on the channel: taken (and seen by the tap)

    def _ping(self, ch: _Channel, frame: dict[str, Any]) -> list[Delivery]:
        return [Delivery(ch.conn, {"type": "pong", "id": frame.get("id")})]

    def _flush(self, number: str, conn: int) -> list[Delivery]:
        out = []
        for mid, p in list(self._pending.items()):
            if p.recipient == number and p.body:
                self.stats["delivered_later"] += 1
                out.append(Delivery(conn, {"type": "message", "id": mid, "from": p.sender, "body": p.body}))
                p.body = ""  # handed over: not kept
        return out

    def tick(self) -> list[Delivery]:
        """Expire stored messages whose TTL ended: the senders get ``failed`` (MIUI then sends
        an SMS). Call it now and then; returns the receipts to send."""
        now = self.clock()
        out: list[Delivery] = []
        with self._lock:
            while self._expiry and self._expiry[0][0] <= now:
                _, mid = heapq.heappop(self._expiry)
                p = self._pending.get(mid)
                if p is None:
                    continue  # acknowledged meanwhile
                if not p.body:  # handed over, never acknowledged
                    if p.expires <= now:
                        del self._pending[mid]
                    continue
                del self._pending[mid]
                self.stats["expired"] += 1
                conn = self._online.get(p.sender)
                if conn is not None:
                    out.append(
                        Delivery(
                            conn,
                            {
                                "type": "receipt",
                                "id": mid,
                                "status": "failed",
                                "to": p.recipient,
                                "reason": "receiver offline",
                            },
                        )
                    )
        return out

    def retained(self) -> dict[str, int]:
        """What the store holds now: message bodies waiting, and their count by recipient."""
        with self._lock:
            waiting = [p for p in self._pending.values() if p.body]
            return {"messages": len(waiting), "bytes": sum(len(p.body.encode()) for p in waiting)}


_HANDLERS: dict[str, Callable[[CloudMessaging, _Channel, dict[str, Any]], list[Delivery]]] = {
    "bind": CloudMessaging._bind,
    "presence": CloudMessaging._presence,
    "message": CloudMessaging._message,
    "ack": CloudMessaging._ack,
    "ping": CloudMessaging._ping,
    "report": CloudMessaging._report,
}


def parse_line(line: bytes) -> dict[str, Any]:
    """One channel frame (a JSON object on one line)."""
    try:
        frame = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a JSON frame: {exc}") from None
    if not isinstance(frame, dict):
        raise ProtocolError("a frame is a JSON object")
    return frame
